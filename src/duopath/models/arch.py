"""Typed architectures: what a model is built from, as one frozen value per model family.

Why a value and not keyword arguments: a model's architecture must be stored with its weights
(``duopath.checkpoints`` keeps :meth:`Architecture.to_json` as ``model_kwargs``) and rebuilt from
that JSON without the config, and it is derived from the validated config by ONE function
(``duopath.training.architectures``), which copies every hyper-parameter field below from the
config section of the same name. So a new hyper-parameter is a field here plus its validated
config field (``duopath.config``; a test checks the two agree on names and defaults): no key
list to extend, no constructor signature to widen.

Two kinds of fields:

* data sizes, which come from the fold (:data:`DATA_FIELDS`): tile feature width, gene-group
  sizes, classes or survival bins, task, magnifications, and the teacher's RNA-mean vectors;
* hyper-parameters, which come from the config section.

Each value checks itself when built (``__post_init__``), so a bad setting is refused with the
same message whether it came from the config, a test or a checkpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from duopath.models.fusion import AttentionMode
from duopath.models.gating import check_head_args

__all__ = ["DATA_FIELDS", "Architecture", "BaselineArch", "StudentArch", "TeacherArch"]

DATA_FIELDS: frozenset[str] = frozenset(
    {"feature_dim", "n_genes_T", "n_genes_E", "n_classes", "task", "magnifications",
     "rna_mean_T", "rna_mean_E"}
)
"""Fields set from the fold's data, not from the config (``training.architectures``)."""

A = TypeVar("A", bound="Architecture")


@dataclass(frozen=True, kw_only=True)
class Architecture:
    """What every multi-expert model shares: inputs, outputs, width and the gate.

    Attributes:
        feature_dim: D, tile feature width. n_classes: C (classes, or survival bins).
        task: "survival" | "classification".
        magnifications: ordered, coarse to fine; one expert per magnification (the teacher's
            IGC pools finer onto the first).
        dim: d, width of tokens and embeddings. n_heads: attention heads. dropout: in [0, 1).
        gating: "max_confidence" | "mean" | "softmax"; gating_temperature (> 0) for "softmax".
    """

    feature_dim: int
    n_classes: int
    task: str = "survival"
    magnifications: tuple[str, ...] = ("10x", "20x")
    dim: int = 128
    n_heads: int = 4
    dropout: float = 0.25
    gating: str = "max_confidence"
    gating_temperature: float = 1.0

    _positive_ints: ClassVar[tuple[str, ...]] = ()
    """Further fields of a family that must be positive integers (checked with the shared ones)."""

    def __post_init__(self) -> None:
        # JSON gives lists; a frozen value holds tuples (hashable, equal after a round trip).
        mags = check_head_args(self.task, self.gating, self.magnifications, self.n_classes)
        self._set("magnifications", mags)
        if not self.gating_temperature > 0:
            raise ValueError(f"gating_temperature must be > 0, got {self.gating_temperature}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        positive = ("feature_dim", "dim", "n_heads", *self._positive_ints)
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def to_json(self) -> dict[str, Any]:
        """Plain values (tuples as lists): what a checkpoint stores as ``model_kwargs``."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls: type[A], values: Mapping[str, Any]) -> A:
        """The architecture of ``to_json`` output (an unknown key is a TypeError naming it)."""
        return cls(**dict(values))

    @classmethod
    def hyper_parameters(cls) -> tuple[str, ...]:
        """Names of the fields that come from the config, not from the data."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name not in DATA_FIELDS)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True, kw_only=True)
class TeacherArch(Architecture):
    """The teacher's architecture (``duopath.models.teacher``).

    Attributes:
        n_genes_T / n_genes_E: gene-group sizes. n_gene_tokens: tokens per gene group.
        gene_hidden: SNN hidden width of the gene encoders.
        attention: "deformable" (default) or "cross" (masked SDPA over all tiles).
        n_refs, n_points, n_interp, max_offset_tiles: deformable sampling (reference tiles per
            query, points per reference and head, tiles interpolated per point, offset bound in
            tile spacings).
        gene_select_keys: "own" (the subspace's own gene tokens; needs n_gene_tokens >= 2) or
            "both" (both groups' tokens): the selection layer never has a single key.
        disentangle, rna_mean_T, rna_mean_E: ablations (``duopath.models.teacher`` docstring);
            the RNA means are the training split's, so they are data, stored with the weights.
    """

    n_genes_T: int  # noqa: N815 - T/E are the paper's subspace names
    n_genes_E: int  # noqa: N815
    gating: str = "mean"  # TeacherConfig's default (the reference's max_confidence mixes risk scales)
    n_gene_tokens: int = 4
    gene_hidden: int = 256
    attention: AttentionMode = "deformable"
    n_refs: int = 8
    n_points: int = 4
    n_interp: int = 4
    max_offset_tiles: float = 2.0
    gene_select_keys: str = "own"
    disentangle: bool = True
    rna_mean_T: tuple[float, ...] | None = None  # noqa: N815
    rna_mean_E: tuple[float, ...] | None = None  # noqa: N815

    _positive_ints: ClassVar[tuple[str, ...]] = (
        "n_gene_tokens", "gene_hidden", "n_refs", "n_points", "n_interp")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gene_select_keys not in ("own", "both"):
            raise ValueError(f"gene_select_keys must be 'own' or 'both', got {self.gene_select_keys!r}")
        n_keys = self.n_gene_tokens * (1 if self.gene_select_keys == "own" else 2)
        if n_keys < 2:
            raise ValueError(
                "gene selection needs >= 2 keys (a single key is the reference's degenerate "
                "attention): use n_gene_tokens >= 2 or gene_select_keys='both'"
            )
        if (self.rna_mean_T is None) != (self.rna_mean_E is None):
            raise ValueError("give both rna_mean_T and rna_mean_E, or neither")
        for s, n in (("T", self.n_genes_T), ("E", self.n_genes_E)):
            vec = getattr(self, f"rna_mean_{s}")
            if vec is None:
                continue
            vec = tuple(float(v) for v in _flat(vec))
            if len(vec) != n:
                raise ValueError(f"rna_mean_{s} has {len(vec)} genes, expected {n}")
            self._set(f"rna_mean_{s}", vec)


@dataclass(frozen=True, kw_only=True)
class StudentArch(Architecture):
    """The student's architecture (``duopath.models.student``); ``dim`` must equal its teacher's.

    Attributes:
        tile_attention: "knn" (default, local on the real layout) or "full" (SDPA).
        n_neighbours: tiles per kNN neighbourhood (itself included).
        n_prototypes: K ITA prototypes (2 default; 8, 32 as in the paper's ablation).
        dpc_k: neighbours for the DPC-KNN density. omega_clamp: bound on log ω.
    """

    tile_attention: str = "knn"
    n_neighbours: int = 9
    n_prototypes: int = 2
    dpc_k: int = 5
    omega_clamp: float = 10.0

    _positive_ints: ClassVar[tuple[str, ...]] = ("n_neighbours",)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_prototypes < 1 or self.dpc_k < 1:
            raise ValueError("n_prototypes and dpc_k must be >= 1")
        if self.tile_attention not in ("knn", "full"):
            raise ValueError(f"tile_attention must be 'knn' or 'full', got {self.tile_attention!r}")


@dataclass(frozen=True, kw_only=True)
class BaselineArch(Architecture):
    """The comparison baselines' shared architecture (``duopath.models.baseline_common``).

    One value builds any baseline; fields a model does not use are still validated. Smaller
    defaults than the teacher's (``dim``, ``n_heads``, ``gene_hidden``), as in ``BaselinesConfig``.

    Attributes:
        n_genes_T / n_genes_E: gene-group sizes (>= 1 for the RNA models, which the model
            checks; histology-only models ignore them).
        n_layers: transformer depth (TransMIL, MCAT). gene_hidden: SNN hidden width.
        n_gene_tokens: tokens per gene group (MCAT).
    """

    n_genes_T: int  # noqa: N815 - T/E are the paper's subspace names
    n_genes_E: int  # noqa: N815
    dim: int = 64
    n_heads: int = 2
    gating: str = "mean"  # the teacher's gate, which the baselines are compared under
    n_layers: int = 2
    gene_hidden: int = 128
    n_gene_tokens: int = 4

    _positive_ints: ClassVar[tuple[str, ...]] = ("n_layers", "gene_hidden", "n_gene_tokens")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dim % self.n_heads:
            raise ValueError(f"dim {self.dim} is not divisible by n_heads {self.n_heads}")


def _flat(vec: Any) -> list:
    """A vector given as a sequence or a tensor, as a flat list of numbers."""
    if hasattr(vec, "flatten"):
        return vec.flatten().tolist()
    return list(vec)
