"""Disentangled multi-modal selective fusion for ONE subspace at ONE magnification.

gene tokens ─(gene→tile attention: deformable or cross)→ + FFN ─(gene selection)→ mean pool
→ X_R^s ∈ R^d, keeping the gene→tile map A_s^m (DESIGN.md, "Model", teacher).

Gene selection: the fused tokens attend back to several gene tokens (the own group's tokens,
or both groups' tokens). The reference attends to a single key, which is degenerate — softmax
over one key is 1, so every query receives the same value (DESIGN.md, "Known defects").
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from duopath.models.deformable import DeformableTileAttention
from duopath.models.layers import FeedForward, MultiHeadAttention, TileCrossAttention

AttentionMode = Literal["deformable", "cross"]


class SubspaceFusion(nn.Module):
    """Gene tokens read the tissue, then re-select among gene tokens, then pool."""

    def __init__(
        self,
        dim: int,
        n_heads: int,
        attention: AttentionMode,
        dropout: float,
        *,
        n_refs: int = 8,
        n_points: int = 4,
        n_interp: int = 4,
        max_offset_tiles: float = 2.0,
    ) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_tiles = nn.LayerNorm(dim)
        self.read: nn.Module
        if attention == "deformable":
            self.read = DeformableTileAttention(dim, n_heads, n_refs, n_points, n_interp, max_offset_tiles)
        elif attention == "cross":
            self.read = TileCrossAttention(dim, n_heads)
        else:
            raise ValueError(f"attention must be 'deformable' or 'cross', got {attention!r}")
        self.ffn = FeedForward(dim, dropout)
        self.norm_select = nn.LayerNorm(dim)
        self.select = MultiHeadAttention(dim, n_heads)
        self.norm_out = nn.LayerNorm(dim)

    def forward(
        self, gene_tokens: Tensor, gene_keys: Tensor, tiles: Tensor, mask: Tensor, coords: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Fuse one subspace.

        Args:
            gene_tokens: [B, Q, d] this subspace's gene tokens (the queries).
            gene_keys: [B, Qk, d] gene tokens the selection layer attends to (Qk >= 2).
            tiles: [B, N, d] projected tiles; mask [B, N]; coords [B, N, 2] µm.

        Returns:
            X_R^s [B, d] and the gene→tile attention map [B, Q, N].
        """
        read, amap = self.read(self.norm_q(gene_tokens), self.norm_tiles(tiles), mask, coords)
        h = self.ffn(gene_tokens + read)
        selected, _ = self.select(self.norm_select(h), gene_keys)
        h = h + selected
        return self.norm_out(h.mean(dim=1)), amap
