"""RNA and histology + RNA baselines: SNN, concat / bilinear late fusion, MCAT (DESIGN.md, "Baselines").

* ``SNN`` reads RNA only: one expert ``"rna"``; ``magnifications`` is ``()``.
* ``ConcatFusion``, ``BilinearFusion`` and ``MCAT`` build one expert per magnification (own
  histology branch, fusion and head) and gate them per sample like the teacher
  (``gating.combine_experts``); the RNA encoders are shared across magnifications, as in the
  teacher (the same patient's RNA should mean the same thing at both scales).

Constructor: the shared baseline architecture (``arch.BaselineArch``). Genes: ``genes_T``
[B, n_genes_T] and ``genes_E`` [B, n_genes_E] are required (ValueError otherwise); the late
fusion models and the SNN read their concatenation, MCAT encodes each group into tokens.

Outputs per expert k: ``embeddings[k]["pooled"]`` [B, d] is the head input; fusion models add
``"wsi"`` and ``"rna"`` (the two branch embeddings before fusion). ``attention[m]["pooled"]``
[B, 1, N_m] is the histology branch's distribution over real tiles (zero on padding).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from duopath.models.arch import BaselineArch
from duopath.models.baseline_common import AttentionMILBranch, Baseline, SelfNormalizingNet, TokenPath
from duopath.models.contract import SUBSPACES, ModelOutput
from duopath.models.layers import GeneEncoder, MultiHeadAttention


class SNN(Baseline):
    """Klambauer et al. 2017 self-normalising network on RNA only.

    [genes_T ; genes_E] → [Linear → SELU → AlphaDropout] (width ``gene_hidden``) →
    [Linear → SELU → AlphaDropout] (width d) → head Linear(d→C). A single expert ``"rna"``:
    ``gate_weights`` is ones [B, 1], ``attention`` is empty; histology inputs are ignored.
    """

    uses_histology = False
    uses_rna = True

    def __init__(self, arch: BaselineArch) -> None:
        super().__init__(arch)
        n_in = self.n_genes["T"] + self.n_genes["E"]
        self.encoder = SelfNormalizingNet(n_in, (self.gene_hidden, self.dim), self.dropout)
        self.heads = self.make_heads(self.dim)

    def forward(
        self,
        feats: Mapping[str, Tensor],
        mask: Mapping[str, Tensor],
        coords: Mapping[str, Tensor],
        genes_T: Tensor | None = None,  # noqa: N803 - T/E are the paper's subspace names
        genes_E: Tensor | None = None,  # noqa: N803
    ) -> ModelOutput:
        """Encode the genes and classify (tiles are ignored; batch size comes from the genes)."""
        del feats, mask, coords
        genes = self._genes(genes_T, genes_E, None)
        h = self.encoder(torch.cat([genes[s] for s in SUBSPACES], dim=-1))
        return self.gated_output({"rna": self.heads["rna"](h)}, {"rna": {"pooled": h}}, {})


class GatedKroneckerFusion(nn.Module):
    """Pathomic-style gated Kronecker fusion of two [B, d] embeddings into [B, d].

    Each modality u ∈ {wsi, rna}: o_u = sigmoid(W_g,u [h_wsi ; h_rna]) ⊙ ReLU(W_u h_u) ∈ R^r
    (the gate sees both modalities, so each can be down-weighted given the other; Pathomic
    uses a bilinear gate, a linear one on the concatenation plays the same role with d·r
    instead of d²·r weights). Then [o_wsi ; 1] ⊗ [o_rna ; 1] flattened ((r+1)² values: the
    appended 1 keeps both unimodal terms next to the bimodal products) → Dropout →
    Linear → GELU → Dropout.
    """

    def __init__(self, dim: int, rank: int, dropout: float) -> None:
        super().__init__()
        self.proj = nn.ModuleDict({u: nn.Linear(dim, rank) for u in ("wsi", "rna")})
        self.gate = nn.ModuleDict({u: nn.Linear(2 * dim, rank) for u in ("wsi", "rna")})
        self.drop = nn.Dropout(dropout)
        self.out = nn.Sequential(nn.Linear((rank + 1) ** 2, dim), nn.GELU(), nn.Dropout(dropout))

    def forward(self, h_wsi: Tensor, h_rna: Tensor) -> Tensor:
        both = torch.cat([h_wsi, h_rna], dim=-1)
        o = {
            u: F.pad(torch.sigmoid(self.gate[u](both)) * F.relu(self.proj[u](h)), (0, 1), value=1.0)
            for u, h in (("wsi", h_wsi), ("rna", h_rna))
        }
        kron = (o["wsi"].unsqueeze(2) * o["rna"].unsqueeze(1)).flatten(1)
        return self.out(self.drop(kron))


class _LateFusion(Baseline):
    """ABMIL histology branch per magnification ⊕ shared SNN gene branch → fusion → head.

    Subclasses say how the two embeddings are fused by defining ``_fusion() -> nn.Module``."""

    uses_rna = True
    _fusion: Callable[[], nn.Module]

    def __init__(self, arch: BaselineArch) -> None:
        super().__init__(arch)
        n_in = self.n_genes["T"] + self.n_genes["E"]
        self.gene_encoder = SelfNormalizingNet(n_in, (self.gene_hidden, self.dim), self.dropout)
        self.branches = nn.ModuleDict(
            {m: AttentionMILBranch(self.feature_dim, self.dim, self.dropout) for m in self.magnifications}
        )
        self.fuse = nn.ModuleDict({m: self._fusion() for m in self.magnifications})
        self.heads = self.make_heads(self.dim)

    def forward(
        self,
        feats: Mapping[str, Tensor],
        mask: Mapping[str, Tensor],
        coords: Mapping[str, Tensor],
        genes_T: Tensor | None = None,  # noqa: N803 - T/E are the paper's subspace names
        genes_E: Tensor | None = None,  # noqa: N803
    ) -> ModelOutput:
        """Run every magnification's expert and gate them (shapes: module docstring)."""
        tiles = {m: self.tiles(m, feats, mask, coords) for m in self.magnifications}
        genes = self._genes(genes_T, genes_E, tiles[self.magnifications[0]][0].shape[0])
        h_rna = self.gene_encoder(torch.cat([genes[s] for s in SUBSPACES], dim=-1))
        logits, embeddings, attention = {}, {}, {}
        for m in self.magnifications:
            x, msk, _ = tiles[m]
            h_wsi, amap = self.branches[m](x, msk)
            fused = self.fuse[m](h_wsi, h_rna)
            logits[m] = self.heads[m](fused)
            embeddings[m] = {"pooled": fused, "wsi": h_wsi, "rna": h_rna}
            attention[m] = {"pooled": amap}
        return self.gated_output(logits, embeddings, attention)


class _Concat(nn.Module):
    """[h_wsi ; h_rna] → Linear(2d→d) → GELU → Dropout."""

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Dropout(dropout))

    def forward(self, h_wsi: Tensor, h_rna: Tensor) -> Tensor:
        return self.net(torch.cat([h_wsi, h_rna], dim=-1))


class ConcatFusion(_LateFusion):
    """Late fusion by concatenation, per magnification.

    ABMIL slide embedding (gated attention over real tiles) ⊕ SNN embedding of [genes_T ;
    genes_E] → Linear(2d→d) + GELU + Dropout → head Linear(d→C); experts gated.
    """

    def _fusion(self) -> nn.Module:
        return _Concat(self.dim, self.dropout)


class BilinearFusion(_LateFusion):
    """Late fusion by gated Kronecker (bilinear) fusion, per magnification (Pathomic-style).

    ABMIL slide embedding and SNN gene embedding → ``GatedKroneckerFusion`` with rank
    r = min(32, d) → head Linear(d→C); experts gated.
    """

    def _fusion(self) -> nn.Module:
        return GatedKroneckerFusion(self.dim, min(32, self.dim), self.dropout)


class CoAttention(nn.Module):
    """Genomic-guided co-attention: gene tokens (queries) attend to the real tiles."""

    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_tiles = nn.LayerNorm(dim)
        self.mha = MultiHeadAttention(dim, n_heads)

    def forward(self, queries: Tensor, tiles: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """[B, Q, d], [B, N, d], [B, N] → co-attended tokens [B, Q, d], weights [B, Q, N]."""
        q, kv = self.norm_q(queries), self.norm_tiles(tiles)
        out, weights = self.mha(q, kv, key_mask=mask, need_weights=True)
        assert weights is not None
        return out, weights


class MCAT(Baseline):
    """Chen et al. 2021 MCAT-style genomic-guided co-attention, one expert per magnification.

    Genes: ``GeneEncoder`` per group (T, E; shared across magnifications) → 2·n_gene_tokens
    gene tokens. Per magnification m: tiles → Linear(D→d) + GELU + Dropout; the gene tokens
    attend to the real tiles (masked multi-head co-attention) → co-attended histology tokens
    → ``n_layers`` transformer layers + gated attention pool → h_wsi. Genomic path (shared):
    the gene tokens → ``n_layers`` transformer layers + gated attention pool → h_rna.
    [h_wsi ; h_rna] → Linear(2d→d) + GELU + Dropout → head Linear(d→C); experts gated.

    Extra outputs: ``embeddings[m]["T"/"E"]`` the mean of the group's co-attended tokens after
    the path transformer; ``attention[m]["T"/"E"]`` [B, 1, N] the group's co-attention
    averaged over its tokens and heads; ``attention[m]["pooled"]`` the pool-weighted average
    of all tokens' co-attention (it ignores the token mixing inside the path transformer).
    """

    uses_rna = True

    def __init__(self, arch: BaselineArch) -> None:
        super().__init__(arch)
        d, mags = self.dim, self.magnifications
        self.gene_encoders = nn.ModuleDict(
            {
                s: GeneEncoder(self.n_genes[s], d, self.n_gene_tokens, self.gene_hidden, self.dropout)
                for s in SUBSPACES
            }
        )
        self.genomic_path = TokenPath(d, self.n_heads, self.n_layers, self.dropout)
        self.tile_proj = nn.ModuleDict(
            {
                m: nn.Sequential(nn.Linear(self.feature_dim, d), nn.GELU(), nn.Dropout(self.dropout))
                for m in mags
            }
        )
        self.coattn = nn.ModuleDict({m: CoAttention(d, self.n_heads) for m in mags})
        self.path = nn.ModuleDict({m: TokenPath(d, self.n_heads, self.n_layers, self.dropout) for m in mags})
        self.fuse = nn.ModuleDict({m: _Concat(d, self.dropout) for m in mags})
        self.heads = self.make_heads(d)

    def forward(
        self,
        feats: Mapping[str, Tensor],
        mask: Mapping[str, Tensor],
        coords: Mapping[str, Tensor],
        genes_T: Tensor | None = None,  # noqa: N803 - T/E are the paper's subspace names
        genes_E: Tensor | None = None,  # noqa: N803
    ) -> ModelOutput:
        """Run every magnification's expert and gate them (shapes: class docstring)."""
        tiles = {m: self.tiles(m, feats, mask, coords) for m in self.magnifications}
        genes = self._genes(genes_T, genes_E, tiles[self.magnifications[0]][0].shape[0])
        n = self.n_gene_tokens
        queries = torch.cat([self.gene_encoders[s](genes[s]) for s in SUBSPACES], dim=1)  # [B, 2n, d]
        h_rna, _, _ = self.genomic_path(queries)
        logits, embeddings, attention = {}, {}, {}
        for m in self.magnifications:
            x, msk, _ = tiles[m]
            co, weights = self.coattn[m](queries, self.tile_proj[m](x), msk)
            h_wsi, tokens, pool = self.path[m](co)
            fused = self.fuse[m](h_wsi, h_rna)
            logits[m] = self.heads[m](fused)
            embeddings[m] = {
                "pooled": fused, "wsi": h_wsi, "rna": h_rna,
                "T": tokens[:, :n].mean(dim=1), "E": tokens[:, n:].mean(dim=1),
            }
            attention[m] = {
                "pooled": pool @ weights,
                "T": weights[:, :n].mean(dim=1, keepdim=True),
                "E": weights[:, n:].mean(dim=1, keepdim=True),
            }
        return self.gated_output(logits, embeddings, attention)
