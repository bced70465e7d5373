"""Building blocks: SNN gene encoder, SDPA multi-head attention, feed-forward, masked softmax."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def masked_softmax(logits: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax over ``dim`` with ``mask`` False entries getting exactly zero probability."""
    return torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=dim)


class SNNBlock(nn.Sequential):
    """Linear → ELU → AlphaDropout, the self-normalising block of SNN/MCAT gene encoders.

    Why LeCun-normal init: SELU-style self-normalisation (mean 0, variance 1 activations)
    assumes weights with variance 1/fan_in; AlphaDropout keeps those statistics.
    """

    def __init__(self, d_in: int, d_out: int, dropout: float) -> None:
        linear = nn.Linear(d_in, d_out)
        nn.init.normal_(linear.weight, std=1.0 / math.sqrt(d_in))
        nn.init.zeros_(linear.bias)
        super().__init__(linear, nn.ELU(), nn.AlphaDropout(dropout))


class GeneEncoder(nn.Module):
    """One gene group → ``n_tokens`` gene tokens of width ``dim``.

    Why several tokens: the gene-selection layer attends back to gene tokens; with one token
    every query would get the same value (the reference's degenerate single-key attention,
    DESIGN.md "Known defects"). The tokens are learned views of the whole group, tagged with
    a learned token embedding so they can specialise.
    """

    def __init__(self, n_genes: int, dim: int, n_tokens: int, hidden: int, dropout: float) -> None:
        super().__init__()
        if n_genes < 1 or n_tokens < 1:
            raise ValueError(f"need n_genes >= 1 and n_tokens >= 1, got {n_genes}, {n_tokens}")
        self.n_tokens, self.dim = n_tokens, dim
        self.snn = nn.Sequential(
            SNNBlock(n_genes, hidden, dropout), SNNBlock(hidden, n_tokens * dim, dropout)
        )
        self.token_embed = nn.Parameter(torch.randn(n_tokens, dim) * 0.02)
        self.norm = nn.LayerNorm(dim)

    def forward(self, genes: Tensor) -> Tensor:
        """[B, G] z-scored expression → [B, n_tokens, dim]."""
        z = self.snn(genes).view(genes.shape[0], self.n_tokens, self.dim)
        return self.norm(z + self.token_embed)


class FeedForward(nn.Module):
    """Pre-norm residual MLP (LayerNorm → Linear → GELU → Dropout → Linear)."""

    def __init__(self, dim: int, dropout: float, expansion: int = 2) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, expansion * dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(expansion * dim, dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


class MultiHeadAttention(nn.Module):
    """Multi-head attention through ``F.scaled_dot_product_attention``.

    Why SDPA: it dispatches to flash / memory-efficient kernels on GPU, which is what makes
    attention over tens of thousands of tiles affordable (DESIGN.md, "Scale notes").
    ``need_weights`` recomputes the head-averaged weights explicitly; that is cheap here
    because it is only asked for with few queries (gene tokens), Q×N not N×N.
    """

    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim {dim} is not divisible by n_heads {n_heads}")
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def _split(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.n_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        query: Tensor,
        context: Tensor,
        key_mask: Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """``query`` [B, Q, d] attends to ``context`` [B, N, d]; ``key_mask`` [B, N] True = real.

        Returns the output [B, Q, d] and, if asked, weights [B, Q, N] averaged over heads.
        """
        q = self._split(self.q_proj(query))
        k = self._split(self.k_proj(context))
        v = self._split(self.v_proj(context))
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        out = self.out_proj(out.transpose(1, 2).reshape(query.shape[0], query.shape[1], -1))
        weights = None
        if need_weights:
            logits = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
            if key_mask is not None:
                logits = logits.masked_fill(~attn_mask, float("-inf"))
            weights = torch.softmax(logits, dim=-1).mean(dim=1)
        return out, weights


class TileCrossAttention(nn.Module):
    """The ``"cross"`` fusion mode: gene tokens attend to every real tile (plain masked MHA)."""

    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        self.mha = MultiHeadAttention(dim, n_heads)

    def forward(self, queries: Tensor, tiles: Tensor, mask: Tensor, coords: Tensor) -> tuple[Tensor, Tensor]:
        """Same signature as the deformable mode; ``coords`` is unused by design."""
        del coords
        out, weights = self.mha(queries, tiles, key_mask=mask, need_weights=True)
        assert weights is not None
        return out, weights
