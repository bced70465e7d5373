"""Deformable gene→tile attention on the real tile layout (the teacher's ``"deformable"`` mode).

The paper applies deformable attention (DAT / Deformable-DETR style: learned sampling offsets
around reference points, bilinear sampling, attention over the samples) to a 2D token grid;
the reference code builds that grid by reshaping 2,500 tiles into a 50×50 pseudo-grid, which
has nothing to do with tissue position (DESIGN.md, "Known defects"). Here:

1. **Reference points are tiles chosen by content.** Gene tokens have no position of their own
   and slides have tissue in different places, so a learned absolute reference point (as in
   Deformable-DETR) means nothing. Each query takes the ``n_refs`` real tiles with the highest
   plain attention score (same q/k projections as the sampled attention, so the selection
   improves as those projections learn). Cost O(Q·N·d): one matmul over all tiles.
2. **Offsets are in tile spacings, converted to µm.** Per head and per point, an offset is
   predicted from (query + reference tile content), bounded by ``tanh · max_offset_tiles``
   and scaled by the slide's tile pitch (estimated from ``coords``), so one model works at
   10x (224 µm) and 20x (112 µm). Offsets therefore move through tissue neighbourhoods.
3. **Sampling reads the nearest REAL tiles.** Each sampled location takes its ``n_interp``
   nearest real tiles (blockwise distance + topk, ``grid.knn_coords``) with bilinear-like tent
   weights (``grid.tent_weights``; exact bilinear on a full lattice cell, renormalised where
   tissue is missing, snapped to the nearest tile off tissue). Padding is never read.
4. **Attention over samples** is content-based (q·k of the interpolated keys), softmax over
   the ``n_refs·n_points`` samples of each query and head.

The returned map A [B, Q, N] is the exact weight each real tile received (attention ×
interpolation weight, averaged over heads): output = Σ_n A[n]·v[n] per head, so IGC and
heatmaps see what the model actually read. Memory: O(B·H·Q·R·P·n_interp·d) for the samples
plus O(B·H·Q·N) for the score row and the map — linear in N, never N×N; the kNN of the
sample points is blockwise.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from duopath.models.grid import estimate_spacing, knn_coords, tent_weights


class DeformableTileAttention(nn.Module):
    """Gene-token queries sample tissue around content-chosen reference tiles."""

    def __init__(
        self,
        dim: int,
        n_heads: int = 4,
        n_refs: int = 8,
        n_points: int = 4,
        n_interp: int = 4,
        max_offset_tiles: float = 2.0,
    ) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim {dim} is not divisible by n_heads {n_heads}")
        if min(n_refs, n_points, n_interp) < 1 or max_offset_tiles <= 0:
            raise ValueError("n_refs, n_points, n_interp must be >= 1 and max_offset_tiles > 0")
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        self.n_refs, self.n_points, self.n_interp = n_refs, n_points, n_interp
        self.max_offset = float(max_offset_tiles)
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.offset = nn.Linear(dim, n_heads * n_points * 2)
        self._init_offsets()

    def _init_offsets(self) -> None:
        """Start as rings around each reference (Deformable-DETR's grid init, in tile units).

        Point p of head h starts at radius ``max_offset·(p+1)/(P+1)`` in direction
        ``2π(h·P+p)/(H·P)``, so the initial samples already cover the neighbourhood instead
        of all collapsing onto the reference tile.
        """
        h, p = self.n_heads, self.n_points
        angle = 2 * math.pi * torch.arange(h * p, dtype=torch.float64) / (h * p)
        radius = (torch.arange(p, dtype=torch.float64) + 1).repeat(h) / (p + 1)
        target = torch.stack([angle.cos(), angle.sin()], dim=-1) * radius[:, None]
        nn.init.zeros_(self.offset.weight)
        with torch.no_grad():
            self.offset.bias.copy_(torch.atanh(target).flatten().float())

    def forward(self, queries: Tensor, tiles: Tensor, mask: Tensor, coords: Tensor) -> tuple[Tensor, Tensor]:
        """Read the tiles.

        Args:
            queries: [B, Q, d] gene tokens.
            tiles: [B, N, d] projected tile features (padding zeroed).
            mask: [B, N] True = real tile (at least one per sample).
            coords: [B, N, 2] tile centres in µm.

        Returns:
            ``out`` [B, Q, d] and the attention map [B, Q, N] (rows sum to 1, 0 on padding).
        """
        b, nq, _ = queries.shape
        n = tiles.shape[1]
        h, dh, p = self.n_heads, self.head_dim, self.n_points
        q = self.q_proj(queries).view(b, nq, h, dh).transpose(1, 2)  # [B,H,Q,dh]
        k = self.k_proj(tiles).view(b, n, h, dh).transpose(1, 2)  # [B,H,N,dh]
        v = self.v_proj(tiles).view(b, n, h, dh).transpose(1, 2)

        r = min(self.n_refs, n)
        with torch.no_grad():
            score = torch.einsum("bhqd,bhnd->bqn", q, k)
            score = score.masked_fill(~mask[:, None, :], float("-inf"))
            top = score.topk(r, dim=-1)
        ref_idx, ref_valid = top.indices, torch.isfinite(top.values)  # [B,Q,R]
        flat_ref = ref_idx.reshape(b, nq * r)
        spacing = estimate_spacing(flat_ref, ref_valid.reshape(b, -1), coords, mask)  # [B]
        ref_xy = coords.gather(1, flat_ref.unsqueeze(-1).expand(-1, -1, 2)).view(b, nq, r, 1, 1, 2)
        ref_feat = tiles.gather(1, flat_ref.unsqueeze(-1).expand(-1, -1, tiles.shape[-1]))
        ref_feat = ref_feat.view(b, nq, r, -1)

        raw = self.offset(queries.unsqueeze(2) + ref_feat).view(b, nq, r, h, p, 2)
        offset = torch.tanh(raw) * (self.max_offset * spacing.view(b, 1, 1, 1, 1, 1))
        locs = (ref_xy + offset).permute(0, 3, 1, 2, 4, 5)  # [B,H,Q,R,P,2]
        s = nq * r * p
        locs = locs.reshape(b, h * s, 2)

        idx, valid = knn_coords(locs, coords, mask, self.n_interp)  # [B,H*S,k]
        ki = idx.shape[-1]
        nbr_xy = coords.gather(1, idx.reshape(b, -1, 1).expand(-1, -1, 2)).view(b, h * s, ki, 2)
        w = tent_weights(locs, nbr_xy, valid, spacing).view(b, h, s, ki)

        gather_idx = idx.view(b, h, s * ki, 1).expand(-1, -1, -1, dh)
        k_s = (k.gather(2, gather_idx).view(b, h, s, ki, dh) * w.unsqueeze(-1)).sum(dim=3)
        v_s = (v.gather(2, gather_idx).view(b, h, s, ki, dh) * w.unsqueeze(-1)).sum(dim=3)
        k_s = k_s.view(b, h, nq, r * p, dh)
        v_s = v_s.view(b, h, nq, r * p, dh)

        logits = torch.einsum("bhqd,bhqsd->bhqs", q, k_s) / math.sqrt(dh)
        sample_ok = ref_valid[:, None, :, :, None].expand(b, 1, nq, r, p).reshape(b, 1, nq, r * p)
        attn = torch.softmax(logits.masked_fill(~sample_ok, float("-inf")), dim=-1)
        out = torch.einsum("bhqs,bhqsd->bhqd", attn, v_s)
        out = self.out_proj(out.transpose(1, 2).reshape(b, nq, h * dh))

        contrib = (attn.unsqueeze(-1) * w.view(b, h, nq, r * p, ki)).reshape(b, h, nq, -1)
        amap = torch.zeros(b, h, nq, n, dtype=contrib.dtype, device=contrib.device)
        amap = amap.scatter_add(-1, idx.view(b, h, nq, r * p * ki), contrib)
        return out, amap.mean(dim=1)
