"""The input/output contract shared by every model and by the training code.

Inputs, per magnification ``m`` in the model's ordered list (e.g. ``("10x", "20x")``):
``feats[m]`` float [B, N_m, D] (padded), ``mask[m]`` bool [B, N_m] (True = real tile),
``coords[m]`` float [B, N_m, 2] tile centres in µm. The nested-grid ``parent`` index is not a
model input: only the IGC loss needs it (``duopath.training.losses``).

Baselines (``baselines_wsi``, ``baselines_fusion``) use the same dataclass with their own keys:
``logits_by_mag`` / ``confidence`` / ``heads`` are keyed by magnification, or ``"rna"`` for the
RNA-only SNN; ``embeddings[k]["pooled"]`` [B, d] is what expert k's head reads (fusion models add
``"wsi"`` / ``"rna"`` branch embeddings, MCAT also ``"T"`` / ``"E"``); ``attention[m]["pooled"]``
[B, 1, N_m] is the expert's attention over real tiles (ABMIL / fusion: gated attention; TransMIL:
last-layer CLS attention; MCAT: pool-weighted co-attention, plus per-group ``"T"`` / ``"E"``).
They have no [X^T ; X^E] head, so ``joint_embedding``, SKD and CGC do not apply to them.

Why one dataclass for teacher and student: SKD, CGC, IGC, the evaluator and the heatmap
writer all read the same fields, so they never need to know which model produced them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

SUBSPACES: tuple[str, str] = ("T", "E")
"""Tumour and tumour-microenvironment subspaces (DESIGN.md, "Model")."""


@dataclass
class ModelOutput:
    """What a forward pass returns.

    Attributes:
        logits: [B, C] after dual-magnification gating (C classes, or C survival bins whose
            hazards are ``sigmoid(logits)``).
        logits_by_mag: per magnification, the expert's [B, C] logits (the task loss is
            applied to each of these: DESIGN.md "Loss = task(10x) + task(20x) + IGC").
        embeddings: per magnification, ``{"T": [B, d], "E": [B, d]}`` (X_R^T, X_R^E for the
            teacher; the student's distilled counterparts).
        attention: per magnification, ``{"T": [B, Q, N_m], "E": [B, Q, N_m]}``; each row is a
            distribution over the real tiles (zero on padding). Teacher: gene token → tile;
            student: subspace → tile attribution through ITA (Q = 1).
        confidence: per magnification, [B] confidence the gating used.
        gate_weights: [B, M] weight of each magnification's expert, in model order.
        prototypes: student only: per magnification, the K ITA tokens [B, K, d].
        prototype_mask: student only: per magnification, [B, K] (False = empty cluster).
        tile_weights: student only: per magnification, token importance ω [B, N_m]
            (zero on padding).
        clusters: student only: per magnification, the DPC-KNN cluster of each tile
            [B, N_m] (-1 on padding).
    """

    logits: Tensor
    logits_by_mag: dict[str, Tensor]
    embeddings: dict[str, dict[str, Tensor]]
    attention: dict[str, dict[str, Tensor]]
    confidence: dict[str, Tensor]
    gate_weights: Tensor
    prototypes: dict[str, Tensor] | None = None
    prototype_mask: dict[str, Tensor] | None = None
    tile_weights: dict[str, Tensor] | None = None
    clusters: dict[str, Tensor] | None = None

    def joint_embedding(self, mag: str) -> Tensor:
        """[X^T ; X^E] at one magnification, [B, 2d]: the head input and the SKD target."""
        return torch.cat([self.embeddings[mag][s] for s in SUBSPACES], dim=-1)


def check_tiles(
    mag: str,
    feats: Mapping[str, Tensor],
    mask: Mapping[str, Tensor],
    coords: Mapping[str, Tensor],
    feature_dim: int,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor, Tensor]:
    """Validate one magnification's inputs, cast them and zero their padding.

    Features are cast to the model's ``dtype`` (stores hold float16). Coordinates are always
    float32: µm positions reach 1e5, beyond float16's range, and must not follow the features.

    Why zero the padding: padded rows may hold anything (even NaN from a reused buffer); a
    masked-out NaN still poisons sums through ``0 * NaN``. Why demand a real tile per sample:
    an all-padding bag has no defined attention distribution (softmax over nothing).
    """
    for name, store in (("feats", feats), ("mask", mask), ("coords", coords)):
        if mag not in store:
            raise KeyError(f"{name} has no entry for magnification {mag!r}")
    x, m, xy = feats[mag], mask[mag], coords[mag]
    if x.dim() != 3 or x.shape[-1] != feature_dim:
        raise ValueError(f"feats[{mag!r}] must be [B, N, {feature_dim}], got {tuple(x.shape)}")
    if m.shape != x.shape[:2] or m.dtype != torch.bool:
        raise ValueError(f"mask[{mag!r}] must be bool {tuple(x.shape[:2])}, got {m.dtype} {tuple(m.shape)}")
    if xy.shape != (*x.shape[:2], 2):
        raise ValueError(f"coords[{mag!r}] must be {(*x.shape[:2], 2)}, got {tuple(xy.shape)}")
    if not bool(m.any(dim=1).all()):
        raise ValueError(f"every sample needs at least one real tile at {mag!r}")
    keep = m.unsqueeze(-1)
    x = x.to(dtype).masked_fill(~keep, 0.0)
    xy = xy.to(torch.float32).masked_fill(~keep, 0.0)
    return x, m, xy
