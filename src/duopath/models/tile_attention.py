"""Tile-to-tile (H-to-H) attention for the student.

Default ``"knn"``: each tile attends to its ``n_neighbours`` nearest REAL tiles by position
(itself included; 9 = a 3×3 neighbourhood on a full lattice). Why local: it gives the student
tissue context without O(N²) memory on CPU (SDPA's CPU path materialises N×N), memory is
O(N·k·d) on every device, and neighbours come from ``coords`` rather than from token order.
Ties at equal distance are broken by position (``grid.knn_coords``), so the layer is exactly
permutation-equivariant over tiles.

``"full"``: global masked self-attention through SDPA (flash / memory-efficient kernels on
GPU: O(N) memory there; on CPU use it only for capped tile counts).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from duopath.models.grid import knn_coords
from duopath.models.layers import MultiHeadAttention


class NeighbourhoodAttention(nn.Module):
    """Multi-head attention restricted to each tile's k nearest real tiles."""

    def __init__(self, dim: int, n_heads: int, n_neighbours: int = 9) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim {dim} is not divisible by n_heads {n_heads}")
        if n_neighbours < 1:
            raise ValueError(f"n_neighbours must be >= 1, got {n_neighbours}")
        self.n_heads, self.head_dim, self.n_neighbours = n_heads, dim // n_heads, n_neighbours
        self.q_proj = nn.Linear(dim, dim)
        self.kv_proj = nn.Linear(dim, 2 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor, coords: Tensor) -> Tensor:
        """``x`` [B, N, d], ``mask`` [B, N], ``coords`` [B, N, 2] → [B, N, d]."""
        b, n, d = x.shape
        h, dh = self.n_heads, self.head_dim
        idx, valid = knn_coords(coords, coords, mask, self.n_neighbours)  # [B, N, k]
        k = idx.shape[-1]
        q = self.q_proj(x).view(b, n, h, dh)
        kv = self.kv_proj(x).gather(1, idx.reshape(b, n * k, 1).expand(-1, -1, 2 * d))
        keys, values = kv.view(b, n, k, 2, h, dh).unbind(dim=3)  # [B, N, k, H, dh]
        logits = torch.einsum("bnhd,bnkhd->bnhk", q, keys) / math.sqrt(dh)
        attn = torch.softmax(logits.masked_fill(~valid[:, :, None, :], float("-inf")), dim=-1)
        out = torch.einsum("bnhk,bnkhd->bnhd", attn, values).reshape(b, n, d)
        return self.out_proj(out)


class FullTileAttention(nn.Module):
    """Global masked self-attention over all real tiles (SDPA)."""

    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        self.mha = MultiHeadAttention(dim, n_heads)

    def forward(self, x: Tensor, mask: Tensor, coords: Tensor) -> Tensor:
        """Same signature as ``NeighbourhoodAttention``; ``coords`` is unused by design."""
        del coords
        out, _ = self.mha(x, x, key_mask=mask)
        return out
