"""Shared pieces of the comparison baselines (DESIGN.md, "Baselines").

Every baseline is built from the SAME architecture (``arch.BaselineArch``), so one config section
builds any of them; fields a model does not use are still validated and then ignored.
Outputs follow ``contract.ModelOutput`` with baseline-specific keys (see ``contract``):
``embeddings[k]["pooled"]`` is the vector each expert's head reads and ``attention[m]["pooled"]``
the expert's attention over real tiles.

Building blocks here, written from the papers (no code copied):

* ``SelfNormalizingNet`` — Klambauer et al. 2017: Linear → SELU → AlphaDropout blocks with
  LeCun-normal weights, the RNA encoder of the SNN / late-fusion baselines;
* ``GatedAttentionPool`` — Ilse et al. 2018: a = softmax_n wᵀ(tanh(V h_n) ⊙ sigmoid(U h_n)),
  pooled = Σ a_n h_n, with the softmax restricted to real tiles;
* ``AttentionMILBranch`` — ABMIL's tile projection + gated attention pooling;
* ``TransformerLayer`` — pre-norm masked multi-head self-attention + FFN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from duopath.models.arch import BaselineArch
from duopath.models.experts import MultiExpertModel
from duopath.models.layers import FeedForward, MultiHeadAttention, masked_softmax


class Baseline(MultiExpertModel):
    """Common constructor, gene checks and gating of the baselines.

    Attributes:
        uses_histology / uses_rna: which inputs ``forward`` reads (class constants).
        expert_names: the magnifications, or ``("rna",)`` for the RNA-only model (which has no
            magnifications).
    """

    arch_type = BaselineArch
    uses_histology: bool = True
    uses_rna: bool = False

    def __init__(self, arch: BaselineArch) -> None:
        """Check the gene counts this model needs and store the shared settings.

        The other fields are checked by ``arch.BaselineArch``; an RNA model needs both gene
        groups non-empty, a histology-only one ignores them.
        """
        mags = arch.magnifications if self.uses_histology else ()
        super().__init__(arch, mags or ("rna",))
        self.magnifications = mags
        lowest = 1 if self.uses_rna else 0
        for name, value in (("n_genes_T", arch.n_genes_T), ("n_genes_E", arch.n_genes_E)):
            if int(value) != value or value < lowest:
                raise ValueError(f"{name} must be an integer >= {lowest} for {type(self).__name__}, "
                                 f"got {value!r}")
        self.n_heads, self.n_layers, self.dropout = arch.n_heads, arch.n_layers, arch.dropout
        self.gene_hidden, self.n_gene_tokens = arch.gene_hidden, arch.n_gene_tokens
        self.n_genes = {"T": int(arch.n_genes_T), "E": int(arch.n_genes_E)}
        # Registered now and filled by subclasses: the heads stay FIRST in parameter order (the
        # order gradient clipping sums the norms in), as they always were for the baselines.
        self.heads = nn.ModuleDict()

    def _genes(self, genes_T: Tensor | None, genes_E: Tensor | None, batch: int | None) -> dict[str, Tensor]:  # noqa: N803
        """Check both gene groups ([B, n_genes_s]) and cast them to the model's dtype."""
        out: dict[str, Tensor] = {}
        for s, g in (("T", genes_T), ("E", genes_E)):
            if g is None:
                raise ValueError(f"{type(self).__name__} needs genes_{s} (it is an RNA model)")
            if batch is None and g.dim() == 2:
                batch = g.shape[0]
            if tuple(g.shape) != (batch, self.n_genes[s]):
                raise ValueError(f"genes_{s} must be {(batch, self.n_genes[s])}, got {tuple(g.shape)}")
            out[s] = g.to(self.param_dtype)
        return out


class SelfNormalizingNet(nn.Sequential):
    """Klambauer's SNN: ``[Linear → SELU → AlphaDropout] × len(widths)``, LeCun-normal init.

    Why LeCun normal (variance 1/fan_in) and AlphaDropout: SELU keeps activations at mean 0,
    variance 1 only with those weights, and AlphaDropout drops to SELU's saturation value
    while preserving the same two moments (plain dropout would not).
    """

    def __init__(self, d_in: int, widths: Sequence[int], dropout: float) -> None:
        layers: list[nn.Module] = []
        for width in widths:
            linear = nn.Linear(d_in, width)
            nn.init.normal_(linear.weight, std=1.0 / math.sqrt(d_in))
            nn.init.zeros_(linear.bias)
            layers += [linear, nn.SELU(), nn.AlphaDropout(dropout)]
            d_in = width
        super().__init__(*layers)


class GatedAttentionPool(nn.Module):
    """Ilse et al. gated attention pooling over the real elements of a bag."""

    def __init__(self, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or dim
        self.V = nn.Linear(dim, hidden)  # the paper's names
        self.U = nn.Linear(dim, hidden)
        self.w = nn.Linear(hidden, 1)

    def forward(self, h: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``h`` [B, N, d], ``mask`` [B, N] (None = all real) → pooled [B, d], weights [B, 1, N]."""
        scores = self.w(torch.tanh(self.V(h)) * torch.sigmoid(self.U(h))).squeeze(-1)
        a = torch.softmax(scores, dim=-1) if mask is None else masked_softmax(scores, mask)
        a = a.unsqueeze(1)
        return (a @ h).squeeze(1), a


class AttentionMILBranch(nn.Module):
    """ABMIL histology branch: Linear(D→d) → GELU → Dropout per tile, gated attention pool."""

    def __init__(self, feature_dim: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(feature_dim, dim), nn.GELU(), nn.Dropout(dropout))
        self.pool = GatedAttentionPool(dim)

    def forward(self, x: Tensor, mask: Tensor, coords: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Tiles [B, N, D] (padding zeroed) → slide embedding [B, d], attention [B, 1, N].

        ``coords`` is accepted and ignored (the pool is position-free), so every slide branch
        takes the same arguments."""
        del coords
        return self.pool(self.proj(x), mask)


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer: x + Dropout(MHA(LN(x))), then a pre-norm residual FFN.

    Exact softmax attention through SDPA (flash / memory-efficient kernels on GPU).
    """

    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, n_heads)
        self.drop = nn.Dropout(dropout)
        self.ffn = FeedForward(dim, dropout)

    def forward(
        self, x: Tensor, key_mask: Tensor | None = None, weights_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """``x`` [B, N, d]; ``key_mask`` [B, N] True = real key.

        If ``weights_mask`` [B, N] is given, also return the head-averaged attention of the
        FIRST token (e.g. CLS) over the keys where it is True, [B, 1, N], computed with the
        same projections as the output (only one query row, so O(N), not O(N²)).
        """
        h = self.norm(x)
        out, _ = self.attn(h, h, key_mask)
        weights = None
        if weights_mask is not None:
            a = self.attn
            b, n, _ = h.shape
            q = a.q_proj(h[:, :1]).view(b, 1, a.n_heads, a.head_dim).transpose(1, 2)
            k = a.k_proj(h).view(b, n, a.n_heads, a.head_dim).transpose(1, 2)
            logits = (q @ k.transpose(-1, -2)) / math.sqrt(a.head_dim)  # [B, H, 1, N]
            weights = masked_softmax(logits, weights_mask[:, None, None, :]).mean(dim=1)
        return self.ffn(x + self.drop(out)), weights


class TokenPath(nn.Module):
    """A small transformer over a few tokens (no padding) + LayerNorm + gated attention pool."""

    def __init__(self, dim: int, n_heads: int, n_layers: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(dim, n_heads, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(dim)
        self.pool = GatedAttentionPool(dim)

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """[B, Q, d] → pooled [B, d], transformed tokens [B, Q, d], pool weights [B, 1, Q]."""
        for layer in self.layers:
            tokens, _ = layer(tokens)
        tokens = self.norm(tokens)
        pooled, weights = self.pool(tokens)
        return pooled, tokens, weights
