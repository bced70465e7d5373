"""Stage I teacher: histology at each magnification + RNA, disentangled into T and E subspaces.

Per magnification m (DESIGN.md, "Model"): tile projection Linear(D→d); per subspace s:
SubspaceFusion (gene→tile attention, FFN, gene selection, pooling) → X_R^s; head
Linear(2d→C) on [X_R^T ; X_R^E]. Gene encoders are shared across magnifications (the same
patient's RNA should mean the same thing at both scales); everything histology-side is per
magnification. Experts are gated per sample (``gating.combine_experts``).

Ablation switches (DESIGN.md, "Baselines"):
* single magnification: ``magnifications=("20x",)`` (inputs for other magnifications are
  ignored);
* no disentanglement: ``disentangle=False`` — both subspaces receive ALL genes (T and E groups
  concatenated) through their own encoders, so capacity, head shape and CGC stay identical and
  only the gene split is removed;
* RNA replaced by its training mean: ``rna_mean_T`` / ``rna_mean_E`` — the given vectors replace
  every sample's genes (the caller computes them on the training split), so any gain that
  remains comes from histology alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from duopath.models.contract import SUBSPACES, ModelOutput, check_tiles
from duopath.models.fusion import AttentionMode, SubspaceFusion
from duopath.models.gating import check_head_args, gate_experts
from duopath.models.layers import GeneEncoder


class Teacher(nn.Module):
    """Multi-modal teacher (see module docstring)."""

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
        n_gene_tokens: int = 4,
        gene_hidden: int = 256,
        attention: AttentionMode = "deformable",
        n_refs: int = 8,
        n_points: int = 4,
        n_interp: int = 4,
        max_offset_tiles: float = 2.0,
        gene_select_keys: str = "own",
        dropout: float = 0.25,
        gating: str = "max_confidence",
        gating_temperature: float = 1.0,
        disentangle: bool = True,
        rna_mean_T: Tensor | Sequence[float] | None = None,  # noqa: N803
        rna_mean_E: Tensor | Sequence[float] | None = None,  # noqa: N803
    ) -> None:
        """Build the teacher.

        Args:
            feature_dim: D, tile feature width. n_genes_T / n_genes_E: gene-group sizes.
            n_classes: C (classes, or survival bins). task: "survival" | "classification".
            magnifications: ordered; the first is the coarsest (IGC pools finer onto it).
            dim: d. n_heads: attention heads. n_gene_tokens: tokens per gene group.
            attention: "deformable" (default) or "cross" (masked SDPA over all tiles).
            n_refs, n_points, n_interp, max_offset_tiles: deformable sampling (reference tiles
                per query, points per reference and head, tiles interpolated per point,
                offset bound in tile spacings).
            gene_select_keys: "own" (the subspace's own gene tokens; needs n_gene_tokens >= 2)
                or "both" (both groups' tokens): the selection layer never has a single key.
            gating: "max_confidence" | "mean" | "softmax"; gating_temperature for "softmax".
            disentangle, rna_mean_T, rna_mean_E: ablations (module docstring).
        """
        super().__init__()
        mags = check_head_args(task, gating, magnifications, n_classes)
        if gene_select_keys not in ("own", "both"):
            raise ValueError(f"gene_select_keys must be 'own' or 'both', got {gene_select_keys!r}")
        n_keys = n_gene_tokens * (1 if gene_select_keys == "own" else 2)
        if n_keys < 2:
            raise ValueError(
                "gene selection needs >= 2 keys (a single key is the reference's degenerate "
                "attention): use n_gene_tokens >= 2 or gene_select_keys='both'"
            )
        self.task, self.magnifications, self.dim = task, mags, dim
        self.feature_dim, self.n_classes = feature_dim, n_classes
        self.gating, self.gating_temperature = gating, gating_temperature
        self.disentangle, self.gene_select_keys = disentangle, gene_select_keys
        self.n_genes = {"T": n_genes_T, "E": n_genes_E}
        in_dim = {"T": n_genes_T, "E": n_genes_E}
        if not disentangle:
            in_dim = {"T": n_genes_T + n_genes_E, "E": n_genes_T + n_genes_E}
        self.gene_encoders = nn.ModuleDict(
            {s: GeneEncoder(in_dim[s], dim, n_gene_tokens, gene_hidden, dropout) for s in SUBSPACES}
        )
        self.tile_proj = nn.ModuleDict(
            {m: nn.Sequential(nn.Linear(feature_dim, dim), nn.GELU(), nn.Dropout(dropout)) for m in mags}
        )
        fusion_kwargs = dict(
            n_refs=n_refs, n_points=n_points, n_interp=n_interp, max_offset_tiles=max_offset_tiles
        )
        self.fusion = nn.ModuleDict(
            {
                m: nn.ModuleDict(
                    {s: SubspaceFusion(dim, n_heads, attention, dropout, **fusion_kwargs) for s in SUBSPACES}
                )
                for m in mags
            }
        )
        self.heads = nn.ModuleDict({m: nn.Linear(2 * dim, n_classes) for m in mags})

        if (rna_mean_T is None) != (rna_mean_E is None):
            raise ValueError("give both rna_mean_T and rna_mean_E, or neither")
        self.rna_mean_T: Tensor | None
        self.rna_mean_E: Tensor | None
        for s, vec in (("T", rna_mean_T), ("E", rna_mean_E)):
            buf = None
            if vec is not None:
                buf = torch.as_tensor(vec, dtype=torch.float32).flatten()
                if buf.numel() != self.n_genes[s]:
                    raise ValueError(f"rna_mean_{s} has {buf.numel()} genes, expected {self.n_genes[s]}")
            self.register_buffer(f"rna_mean_{s}", buf)

    @property
    def replaces_rna(self) -> bool:
        """True when the RNA-mean ablation is active."""
        return self.rna_mean_T is not None

    def _gene_inputs(
        self,
        genes_T: Tensor | None,  # noqa: N803 - T/E are the paper's subspace names
        genes_E: Tensor | None,  # noqa: N803
        batch: int,
    ) -> dict[str, Tensor]:
        given = {"T": genes_T, "E": genes_E}
        if self.rna_mean_T is not None and self.rna_mean_E is not None:
            given = {"T": self.rna_mean_T.expand(batch, -1), "E": self.rna_mean_E.expand(batch, -1)}
        genes: dict[str, Tensor] = {}
        for s, g in given.items():
            if g is None:
                raise ValueError(f"the teacher needs genes_{s} (or the rna_mean ablation)")
            if g.shape != (batch, self.n_genes[s]):
                raise ValueError(f"genes_{s} must be {(batch, self.n_genes[s])}, got {tuple(g.shape)}")
            genes[s] = g.to(self.heads[self.magnifications[0]].weight.dtype)
        if not self.disentangle:
            both = torch.cat([genes[s] for s in SUBSPACES], dim=-1)
            return {s: both for s in SUBSPACES}
        return genes

    def forward(
        self,
        feats: Mapping[str, Tensor],
        mask: Mapping[str, Tensor],
        coords: Mapping[str, Tensor],
        genes_T: Tensor | None = None,  # noqa: N803
        genes_E: Tensor | None = None,  # noqa: N803
    ) -> ModelOutput:
        """Run every magnification's expert and gate them (shapes: ``contract`` module)."""
        batch = feats[self.magnifications[0]].shape[0]
        genes = self._gene_inputs(genes_T, genes_E, batch)
        tokens = {s: self.gene_encoders[s](genes[s]) for s in SUBSPACES}
        if self.gene_select_keys == "both":
            both = torch.cat([tokens[s] for s in SUBSPACES], dim=1)
            keys = {s: both for s in SUBSPACES}
        else:
            keys = tokens

        logits_by_mag: dict[str, Tensor] = {}
        embeddings: dict[str, dict[str, Tensor]] = {}
        attention: dict[str, dict[str, Tensor]] = {}
        for m in self.magnifications:
            x, msk, xy = check_tiles(m, feats, mask, coords, self.feature_dim, self.heads[m].weight.dtype)
            tiles = self.tile_proj[m](x)
            embeddings[m], attention[m] = {}, {}
            for s in SUBSPACES:
                emb, amap = self.fusion[m][s](tokens[s], keys[s], tiles, msk, xy)
                embeddings[m][s], attention[m][s] = emb, amap
            logits_by_mag[m] = self.heads[m](torch.cat([embeddings[m][s] for s in SUBSPACES], -1))
        confidence, logits, weights = gate_experts(logits_by_mag, self.magnifications, self.task,
                                                   self.gating, self.gating_temperature)
        return ModelOutput(
            logits=logits,
            logits_by_mag=logits_by_mag,
            embeddings=embeddings,
            attention=attention,
            confidence=confidence,
            gate_weights=weights,
        )
