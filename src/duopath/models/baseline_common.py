"""Shared pieces of the comparison baselines (DESIGN.md, "Baselines").

Every baseline takes the SAME keyword arguments (``Baseline.__init__``), so one config section
builds any of them; arguments a model does not use are still validated and then ignored.
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
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from duopath.models.contract import ModelOutput, check_tiles
from duopath.models.gating import check_head_args, gate_experts
from duopath.models.layers import FeedForward, MultiHeadAttention, masked_softmax


class Baseline(nn.Module):
    """Common constructor, input checks and gating of the baselines.

    Attributes:
        uses_histology / uses_rna: which inputs ``forward`` reads (class constants).
        experts: keys of ``logits_by_mag`` and ``heads`` (the magnifications, or ``("rna",)``).
    """

    uses_histology: bool = True
    uses_rna: bool = False

    def __init__(
        self,
        *,
        feature_dim: int,
        n_genes_T: int,  # noqa: N803 - T/E are the paper's subspace names
        n_genes_E: int,  # noqa: N803
        n_classes: int,
        task: str = "survival",
        magnifications: Sequence[str] = ("10x", "20x"),
        dim: int = 128,
        n_heads: int = 4,
        n_layers: int = 2,
        gene_hidden: int = 256,
        n_gene_tokens: int = 4,
        dropout: float = 0.25,
        gating: str = "max_confidence",
        gating_temperature: float = 1.0,
    ) -> None:
        """Validate and store the shared arguments.

        Args:
            feature_dim: D, tile feature width. n_genes_T / n_genes_E: gene-group sizes
                (>= 1 for the RNA models; histology-only models ignore them).
            n_classes: C (classes, or survival bins). task: "survival" | "classification".
            magnifications: ordered; one expert per magnification in histology models.
            dim: d. n_heads: attention heads (d % n_heads == 0). n_layers: transformer depth
                (TransMIL, MCAT). gene_hidden: SNN hidden width. n_gene_tokens: tokens per
                gene group (MCAT). dropout: in [0, 1).
            gating: "max_confidence" | "mean" | "softmax"; gating_temperature (> 0) for "softmax".
        """
        super().__init__()
        mags = check_head_args(task, gating, magnifications, n_classes)
        if not gating_temperature > 0:
            raise ValueError(f"gating_temperature must be > 0, got {gating_temperature}")
        for name, value in (("feature_dim", feature_dim), ("dim", dim), ("n_heads", n_heads),
                            ("n_layers", n_layers), ("gene_hidden", gene_hidden),
                            ("n_gene_tokens", n_gene_tokens)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if dim % n_heads:
            raise ValueError(f"dim {dim} is not divisible by n_heads {n_heads}")
        lowest = 1 if self.uses_rna else 0
        for name, value in (("n_genes_T", n_genes_T), ("n_genes_E", n_genes_E)):
            if int(value) != value or value < lowest:
                raise ValueError(f"{name} must be an integer >= {lowest} for {type(self).__name__}, "
                                 f"got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")

        self.task, self.n_classes, self.feature_dim = task, n_classes, feature_dim
        self.magnifications: tuple[str, ...] = mags if self.uses_histology else ()
        self.experts: tuple[str, ...] = self.magnifications or ("rna",)
        self.dim, self.n_heads, self.n_layers, self.dropout = dim, n_heads, n_layers, dropout
        self.gene_hidden, self.n_gene_tokens = gene_hidden, n_gene_tokens
        self.n_genes = {"T": int(n_genes_T), "E": int(n_genes_E)}
        self.gating, self.gating_temperature = gating, gating_temperature
        self.heads = nn.ModuleDict()  # filled by subclasses, keyed like ``experts``

    @property
    def _dtype(self) -> torch.dtype:
        return self.heads[self.experts[0]].weight.dtype

    def _tiles(
        self, mag: str, feats: Mapping[str, Tensor], mask: Mapping[str, Tensor], coords: Mapping[str, Tensor]
    ) -> tuple[Tensor, Tensor, Tensor]:
        return check_tiles(mag, feats, mask, coords, self.feature_dim, self._dtype)

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
            out[s] = g.to(self._dtype)
        return out

    def _output(
        self,
        logits_by_mag: dict[str, Tensor],
        embeddings: dict[str, dict[str, Tensor]],
        attention: dict[str, dict[str, Tensor]],
    ) -> ModelOutput:
        """Confidence per expert, gated logits (``gating.combine_experts``), packed output."""
        confidence, logits, weights = gate_experts(logits_by_mag, self.experts, self.task, self.gating,
                                                   self.gating_temperature)
        return ModelOutput(
            logits=logits,
            logits_by_mag=logits_by_mag,
            embeddings=embeddings,
            attention=attention,
            confidence=confidence,
            gate_weights=weights,
        )


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
