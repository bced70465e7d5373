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

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from duopath.models.arch import TeacherArch
from duopath.models.contract import SUBSPACES, ModelOutput
from duopath.models.experts import MultiExpertModel
from duopath.models.fusion import SubspaceFusion
from duopath.models.layers import GeneEncoder


class Teacher(MultiExpertModel):
    """Multi-modal teacher (see module docstring)."""

    arch_type = TeacherArch

    def __init__(self, arch: TeacherArch) -> None:
        """Build the teacher of ``arch`` (its fields, their meaning and checks: ``arch.TeacherArch``)."""
        super().__init__(arch)
        mags, dim, dropout = self.magnifications, arch.dim, arch.dropout
        self.disentangle, self.gene_select_keys = arch.disentangle, arch.gene_select_keys
        self.n_genes = {"T": arch.n_genes_T, "E": arch.n_genes_E}
        in_dim = dict(self.n_genes)
        if not arch.disentangle:
            in_dim = {"T": arch.n_genes_T + arch.n_genes_E, "E": arch.n_genes_T + arch.n_genes_E}
        self.gene_encoders = nn.ModuleDict(
            {s: GeneEncoder(in_dim[s], dim, arch.n_gene_tokens, arch.gene_hidden, dropout) for s in SUBSPACES}
        )
        self.tile_proj = nn.ModuleDict(
            {m: nn.Sequential(nn.Linear(arch.feature_dim, dim), nn.GELU(), nn.Dropout(dropout)) for m in mags}
        )
        fusion_kwargs = dict(
            n_refs=arch.n_refs, n_points=arch.n_points, n_interp=arch.n_interp,
            max_offset_tiles=arch.max_offset_tiles,
        )
        self.fusion = nn.ModuleDict(
            {
                m: nn.ModuleDict(
                    {
                        s: SubspaceFusion(dim, arch.n_heads, arch.attention, dropout, **fusion_kwargs)
                        for s in SUBSPACES
                    }
                )
                for m in mags
            }
        )
        self.heads = self.make_heads(2 * dim)
        self.rna_mean_T: Tensor | None
        self.rna_mean_E: Tensor | None
        for s, vec in (("T", arch.rna_mean_T), ("E", arch.rna_mean_E)):
            buf = None if vec is None else torch.tensor(vec, dtype=torch.float32)
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
            genes[s] = g.to(self.param_dtype)
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
            x, msk, xy = self.tiles(m, feats, mask, coords)
            tiles = self.tile_proj[m](x)
            embeddings[m], attention[m] = {}, {}
            for s in SUBSPACES:
                emb, amap = self.fusion[m][s](tokens[s], keys[s], tiles, msk, xy)
                embeddings[m][s], attention[m][s] = emb, amap
            logits_by_mag[m] = self.heads[m](torch.cat([embeddings[m][s] for s in SUBSPACES], -1))
        return self.gated_output(logits_by_mag, embeddings, attention)
