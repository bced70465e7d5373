"""Stage II student: histology only, distilled from the teacher (DESIGN.md, "Model").

Per magnification: Linear(D→d) → tile-to-tile attention (``tile_attention``; default local
kNN attention on the real layout) + FFN → ITA (ω = exp(clamp(Linear(d→1))), DPC-KNN into K
prototypes, ω-weighted merge; ``ita``) → subspace pooling → head Linear(2d→C); experts gated
as in the teacher.

Subspace pooling (how K prototypes meet the teacher's [X_R^T ; X_R^E] for SKD): two learned
queries, one per subspace, attend over the K prototypes (masked softmax, each prototype's score
biased by the log of its cluster's ω mass, so the pooled embedding keeps how much of the tissue
each cluster covers — the composition a MIL attention pool over all tiles would see), giving
X_S^T and X_S^E ∈ R^d; SKD's MSE compares them with X_R^T and X_R^E, and the head sees [X_S^T ; X_S^E]
exactly as the teacher's head sees its pair. Why not "prototype 0 ↔ T, prototype 1 ↔ E" for
K = 2, nor a Linear(K·d→2d) for other K: DPC-KNN orders centres by density-peak score, which
says nothing about tumour vs TME, so a fixed order would flip the MSE target between slides.
The learned queries are permutation-invariant over prototypes and work unchanged for
K = 2, 8, 32. After ITA the cost no longer grows with N (only the pooling over K tokens).

Heatmaps: ``attention[m][s]`` [B, 1, N] is each tile's share of X_S^s (pooling weight of its
cluster × its ω share within the cluster), plus ``tile_weights`` (ω) and ``clusters``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from duopath.models.arch import StudentArch
from duopath.models.contract import SUBSPACES, ModelOutput
from duopath.models.experts import MultiExpertModel
from duopath.models.ita import dpc_knn, merge_tokens
from duopath.models.layers import FeedForward
from duopath.models.tile_attention import FullTileAttention, NeighbourhoodAttention


class StudentExpert(nn.Module):
    """One magnification's student branch, up to the subspace embeddings."""

    def __init__(
        self,
        feature_dim: int,
        dim: int,
        n_heads: int,
        tile_attention: str,
        n_neighbours: int,
        n_prototypes: int,
        dpc_k: int,
        dropout: float,
        omega_clamp: float,
    ) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(feature_dim, dim), nn.GELU(), nn.Dropout(dropout))
        self.norm_ctx = nn.LayerNorm(dim)
        self.context: nn.Module
        if tile_attention == "knn":
            self.context = NeighbourhoodAttention(dim, n_heads, n_neighbours)
        elif tile_attention == "full":
            self.context = FullTileAttention(dim, n_heads)
        else:
            raise ValueError(f"tile_attention must be 'knn' or 'full', got {tile_attention!r}")
        self.ffn = FeedForward(dim, dropout)
        self.omega = nn.Linear(dim, 1)
        self.omega_clamp = omega_clamp
        self.n_prototypes, self.dpc_k = n_prototypes, dpc_k
        self.queries = nn.Parameter(torch.randn(len(SUBSPACES), dim) * 0.02)
        self.key = nn.Linear(dim, dim)
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, x: Tensor, mask: Tensor, coords: Tensor) -> dict[str, Tensor]:
        """Tiles [B, N, D] → embeddings [B, 2, d] plus ITA outputs for heatmaps and SKD."""
        tokens = self.proj(x)
        tokens = tokens + self.context(self.norm_ctx(tokens), mask, coords)
        tokens = self.ffn(tokens)
        # ω = exp(s), s clamped: the merge only uses ratios of ω, the clamp keeps exp finite.
        raw = self.omega(tokens).squeeze(-1).clamp(-self.omega_clamp, self.omega_clamp)
        omega = torch.exp(raw) * mask
        clusters = dpc_knn(tokens, mask, self.n_prototypes, self.dpc_k)
        protos, mass = merge_tokens(tokens, omega, clusters.assign, self.n_prototypes)
        proto_mask = clusters.center_valid & (mass > 0)

        scores = torch.einsum("sd,bkd->bsk", self.queries, self.key(protos))
        # + log Σω of each cluster: the pooling weighs a prototype by how much (ω-weighted) tissue
        # it stands for. Without it a prototype is a cluster MEAN and the pooled embedding cannot
        # tell a slide that is 80 % tumour from one that is 20 % (same two cluster means).
        scores = scores / math.sqrt(protos.shape[-1]) + mass.clamp(min=1e-30).log()[:, None, :]
        pool = torch.softmax(scores.masked_fill(~proto_mask[:, None, :], float("-inf")), dim=-1)
        emb = self.norm_out(torch.einsum("bsk,bkd->bsd", pool, protos))

        idx = clusters.assign.clamp(min=0)
        share = omega / mass.gather(1, idx).clamp(min=1e-30)
        tile_attn = pool.gather(2, idx[:, None, :].expand(-1, pool.shape[1], -1)) * share[:, None]
        return {
            "embedding": emb,
            "prototypes": protos,
            "prototype_mask": proto_mask,
            "omega": omega,
            "assign": clusters.assign,
            "tile_attention": tile_attn,
        }


class Student(MultiExpertModel):
    """Histology-only student (see module docstring)."""

    arch_type = StudentArch

    def __init__(self, arch: StudentArch) -> None:
        """Build the student of ``arch`` (its fields, their meaning and checks: ``arch.StudentArch``)."""
        super().__init__(arch)
        self.n_prototypes = arch.n_prototypes
        self.experts = nn.ModuleDict(
            {
                m: StudentExpert(
                    arch.feature_dim,
                    arch.dim,
                    arch.n_heads,
                    arch.tile_attention,
                    arch.n_neighbours,
                    arch.n_prototypes,
                    arch.dpc_k,
                    arch.dropout,
                    arch.omega_clamp,
                )
                for m in self.magnifications
            }
        )
        self.heads = self.make_heads(2 * arch.dim)

    def forward(
        self,
        feats: Mapping[str, Tensor],
        mask: Mapping[str, Tensor],
        coords: Mapping[str, Tensor],
    ) -> ModelOutput:
        """Run every magnification's expert and gate them (shapes: ``contract`` module)."""
        logits_by_mag: dict[str, Tensor] = {}
        embeddings: dict[str, dict[str, Tensor]] = {}
        attention: dict[str, dict[str, Tensor]] = {}
        ita: dict[str, dict[str, Tensor]] = {}
        for m in self.magnifications:
            x, msk, xy = self.tiles(m, feats, mask, coords)
            res = self.experts[m](x, msk, xy)
            emb = res["embedding"]
            embeddings[m] = {s: emb[:, i] for i, s in enumerate(SUBSPACES)}
            attention[m] = {s: res["tile_attention"][:, i : i + 1] for i, s in enumerate(SUBSPACES)}
            logits_by_mag[m] = self.heads[m](emb.flatten(1))
            ita[m] = res
        return self.gated_output(
            logits_by_mag,
            embeddings,
            attention,
            prototypes={m: r["prototypes"] for m, r in ita.items()},
            prototype_mask={m: r["prototype_mask"] for m, r in ita.items()},
            tile_weights={m: r["omega"] for m, r in ita.items()},
            clusters={m: r["assign"] for m, r in ita.items()},
        )
