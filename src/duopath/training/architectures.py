"""The architecture each trained model is built from: config hyper-parameters + fold sizes.

One function per model family, all through :func:`from_config`: every hyper-parameter of the
family's architecture (``duopath.models.arch``, whose hyper-parameters ARE the ``Arch`` fields of
its config section) is read from that section by its own name, so a new hyper-parameter needs no
key list here. The data-dependent sizes (feature width, gene-group sizes, classes or survival
bins, task, magnifications, the RNA-mean vectors, the survival heads' Kaplan–Meier starting
point) come from the fold. The result is stored in the checkpoint (``Architecture.to_json``), so
a checkpoint rebuilds its model without the config.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel

from duopath.config import BaselinesConfig, StudentConfig, TeacherConfig
from duopath.evaluation.calibration import km_bin_hazards
from duopath.models.arch import Architecture, BaselineArch, StudentArch, TeacherArch
from duopath.training.fold_data import FoldData

__all__ = ["STUDENT_ARCH", "baseline_arch", "from_config", "student_arch", "survival_prior",
           "teacher_arch"]

STUDENT_ARCH = "student"
"""The ``duopath.models`` registry entry both students (with and without SKD) are built from."""

A = TypeVar("A", bound=Architecture)


def from_config(arch: type[A], sections: Sequence[BaseModel], **fixed: Any) -> A:
    """``arch`` with the values ``fixed`` by the caller (the data sizes, or a setting the caller
    resolved) and every other hyper-parameter from the one of ``sections`` that is its config
    section (``arch.config_sources``: the teacher's gate for a baseline, say).

    Raises:
        TypeError: a hyper-parameter no config section declares (declare it as an ``Arch`` field
            in ``duopath.config``), or whose section is not among ``sections``.
    """
    values = dict(fixed)
    for name in arch.hyper_parameters():
        if name in values:
            continue
        source = arch.config_sources.get(name)
        section = next((s for s in sections if source is not None and isinstance(s, source)), None)
        if section is None:
            where = "no config section" if source is None else f"{source.__name__}, not given"
            raise TypeError(f"{arch.__name__}.{name} is set by {where} "
                            f"({[type(s).__name__ for s in sections]})")
        values[name] = getattr(section, name)
    return arch(**values)


def survival_prior(data: FoldData) -> tuple[float, ...] | None:
    """The logits of the fold's TRAINING Kaplan–Meier hazards per survival bin (None for
    classification): where every survival head starts (``arch.Architecture.survival_prior``)."""
    if data.task != "survival":
        return None
    train = data.samples.get("train") or []
    if data.time_bins is None or not train:
        raise ValueError(f"fold {data.fold}: the survival prior needs the training samples and bins")
    h = km_bin_hazards([s.time for s in train], [s.event for s in train], data.time_bins)
    return tuple(float(v) for v in np.log(h) - np.log1p(-h))


def _sizes(data: FoldData, feature_dim: int, magnifications: Sequence[str]) -> dict[str, Any]:
    if not magnifications:
        raise ValueError("cfg.magnifications must be resolved (use variant_config)")
    return {"feature_dim": int(feature_dim), "n_classes": data.n_classes, "task": data.task,
            "magnifications": tuple(magnifications), "survival_prior": survival_prior(data)}


def _gene_sizes(data: FoldData) -> dict[str, int]:
    return {"n_genes_T": len(data.genes.genes_T), "n_genes_E": len(data.genes.genes_E)}


def teacher_arch(cfg: TeacherConfig, data: FoldData, feature_dim: int) -> TeacherArch:
    """The teacher (or ablation) of resolved settings ``cfg`` (``variants.variant_config``)."""
    sizes = {**_sizes(data, feature_dim, cfg.magnifications or ()), **_gene_sizes(data)}
    if cfg.rna_mean:
        sizes["rna_mean_T"] = tuple(data.genes.train_mean_T.tolist())
        sizes["rna_mean_E"] = tuple(data.genes.train_mean_E.tolist())
    return from_config(TeacherArch, [cfg], **sizes)


def baseline_arch(cfg: BaselinesConfig, teacher: TeacherConfig, data: FoldData,
                  feature_dim: int) -> BaselineArch:
    """A baseline: its own section's settings, the gate of the teacher it is compared with."""
    sizes = {**_sizes(data, feature_dim, teacher.magnifications or ()), **_gene_sizes(data)}
    return from_config(BaselineArch, [cfg, teacher], **sizes)


def student_arch(cfg: StudentConfig, data: FoldData, feature_dim: int, mags: Sequence[str],
                 teacher_dim: int) -> StudentArch:
    """A student of the teacher of width ``teacher_dim`` (SKD's MSE compares the embeddings)."""
    dim = teacher_dim if cfg.dim is None else int(cfg.dim)
    if dim != teacher_dim:
        raise ValueError(f"student.dim={dim} differs from the teacher's dim={teacher_dim}: SKD's MSE "
                         "compares the embeddings (set student.dim: null)")
    return from_config(StudentArch, [cfg], **_sizes(data, feature_dim, mags), dim=dim)
