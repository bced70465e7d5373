"""Typed architectures: what a model is built from, as one frozen value per model family.

Why a value and not keyword arguments: a model's architecture must be stored with its weights
(``duopath.checkpoints`` keeps :meth:`Architecture.to_json` as ``model_kwargs``) and rebuilt from
that JSON without the config, and it is derived from the validated config by ONE function
(``duopath.training.architectures.from_config``).

Why the hyper-parameters are not declared here: each is ONE config field, marked ``Arch[...]``
in ``duopath.config`` (``dim: Arch[int] = Field(128, ge=4, description=...)``), and the family's
class takes its name, type and default from there (:func:`configured_by`). A new hyper-parameter
is that field (and its ``config.yaml`` value): no field here, no key list, no constructor
signature to widen; the model reads it as ``self.arch.<name>``.

Two kinds of fields:

* data sizes, which come from the fold (:data:`DATA_FIELDS`), declared here: tile feature width,
  gene-group sizes, classes or survival bins, task, magnifications, the teacher's RNA-mean vectors,
  and the survival heads' starting point (the training patients' Kaplan–Meier hazards);
* hyper-parameters, from the config section (their meaning: the config field descriptions).

Each value checks itself when built (``__post_init__``), so a bad setting is refused with the
same message whether it came from the config, a test or a checkpoint.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from duopath.config import BaselinesConfig, StudentConfig, TeacherConfig
from duopath.config_base import architecture_fields
from duopath.models.gating import check_head_args

__all__ = ["DATA_FIELDS", "Architecture", "BaselineArch", "StudentArch", "TeacherArch",
           "configured_by"]

DATA_FIELDS: frozenset[str] = frozenset(
    {"feature_dim", "n_genes_T", "n_genes_E", "n_classes", "task", "magnifications",
     "rna_mean_T", "rna_mean_E", "survival_prior"}
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
        dim, n_heads, dropout, gating, gating_temperature: the hyper-parameters every family
            has (d, attention heads, dropout in [0, 1), the expert gate -- "max_confidence" |
            "mean" | "softmax" | "validation", the last one weighting chosen on the validation
            patients after training, ``training.gate_fit`` -- and its softmax temperature);
            declared here for the shared checks, their defaults are each family's
            config section's (:func:`configured_by`).
        survival_prior: survival only, the hazard logits [K] the heads start from (the fold's
            TRAINING Kaplan–Meier per bin, ``training.architectures.survival_prior``); the heads'
            weights then start at 0, so the untrained model predicts that curve for everyone
            (``experts.MultiExpertModel.make_heads``). None: PyTorch's default head init.
    """

    feature_dim: int
    n_classes: int
    task: str = "survival"
    magnifications: tuple[str, ...] = ("10x", "20x")
    dim: int
    n_heads: int
    dropout: float
    gating: str
    gating_temperature: float
    survival_prior: tuple[float, ...] | None = None

    _positive_ints: ClassVar[tuple[str, ...]] = ()
    """Further fields of a family that must be positive integers (checked with the shared ones)."""
    config_sources: ClassVar[Mapping[str, type[BaseModel]]] = {}
    """Hyper-parameter name -> the config section (class) it is read from (:func:`configured_by`)."""

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
        if self.survival_prior is not None:
            prior = tuple(float(v) for v in _flat(self.survival_prior))
            if self.task != "survival" or len(prior) != self.n_classes:
                raise ValueError(f"survival_prior needs task 'survival' and {self.n_classes} bins, got "
                                 f"{len(prior)} values for task {self.task!r}")
            if not all(math.isfinite(v) for v in prior):
                raise ValueError(f"survival_prior must be finite logits, got {prior}")
            self._set("survival_prior", prior)

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def to_json(self) -> dict[str, Any]:
        """Plain values (tuples as lists): what a checkpoint stores as ``model_kwargs``.

        ``survival_prior`` is left out when None (its default), so the JSON of a model without one
        is the JSON checkpoints held before the field existed, key for key."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
                if not (f.name == "survival_prior" and self.survival_prior is None)}

    @classmethod
    def from_json(cls: type[A], values: Mapping[str, Any]) -> A:
        """The architecture of ``to_json`` output (an unknown key is a TypeError naming it)."""
        return cls(**dict(values))

    @classmethod
    def hyper_parameters(cls) -> tuple[str, ...]:
        """Names of the fields that come from the config, not from the data."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name not in DATA_FIELDS)


SHARED_HYPER_PARAMETERS: tuple[str, ...] = Architecture.hyper_parameters()
"""dim, n_heads, dropout, gating, gating_temperature: what every family reads from a section."""


def configured_by(section: type[BaseModel], *shared_from: type[BaseModel]) -> Callable[[type[A]], type[A]]:
    """Make the decorated class a frozen, keyword-only dataclass whose hyper-parameters are the
    ``Arch[...]`` fields of ``section`` (name, type and default copied from the config field).

    A shared hyper-parameter (:data:`SHARED_HYPER_PARAMETERS`) that ``section`` does not mark
    comes from the first of ``shared_from`` that does (the baselines take the teacher's gate).
    The class body declares only what the data gives, and fields whose value is resolved rather
    than copied. Field order (= the checkpoint JSON's key order): the inherited fields, the
    class's fields without a default, the section's new hyper-parameters in config order, then
    the class's fields with a default.

    Raises:
        TypeError: a field declared both in the class body and as an ``Arch`` field of its
            section (declare it once, in the config).
    """

    def make(cls: type[A]) -> type[A]:
        sources = dict.fromkeys(architecture_fields(section), section)
        for name in SHARED_HYPER_PARAMETERS:
            if name not in sources:
                owner = next((s for s in shared_from if name in architecture_fields(s)), None)
                if owner is not None:
                    sources[name] = owner
        own = inspect.get_annotations(cls)  # the class body's own, not inherited
        twice = sorted(set(own) & set(sources))
        if twice:
            owners = sorted({sources[n].__name__ for n in twice})
            raise TypeError(f"{cls.__name__} declares {twice}, already Arch fields of {owners}: "
                            "declare a hyper-parameter once, in the config")
        config = {name: architecture_fields(src)[name] for name, src in sources.items()}
        required = {n: t for n, t in own.items() if n not in cls.__dict__}
        with_default = {n: t for n, t in own.items() if n in cls.__dict__}
        cls.__annotations__ = {**required, **{n: f.annotation for n, f in config.items()},
                               **with_default}
        for name, info in config.items():
            if info.default_factory is not None:
                setattr(cls, name, dataclasses.field(default_factory=info.default_factory))
            elif info.default is not PydanticUndefined:
                setattr(cls, name, info.default)
        made = dataclass(frozen=True, kw_only=True)(cls)
        made.config_sources = {**getattr(made, "config_sources", {}), **sources}
        return made

    return make


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@configured_by(TeacherConfig)
class TeacherArch(Architecture):
    """The teacher's architecture (``duopath.models.teacher``): the ``Arch`` fields of
    ``TeacherConfig`` (attention mode, deformable sampling, gene tokens and selection keys,
    ``disentangle`` ...) and the fold's sizes.

    Attributes:
        n_genes_T / n_genes_E: gene-group sizes.
        rna_mean_T, rna_mean_E: the ``rna_mean`` ablation (``duopath.models.teacher`` docstring);
            the RNA means are the training split's, so they are data, stored with the weights.
    """

    n_genes_T: int  # noqa: N815 - T/E are the paper's subspace names
    n_genes_E: int  # noqa: N815
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


@configured_by(StudentConfig)
class StudentArch(Architecture):
    """The student's architecture (``duopath.models.student``): the ``Arch`` fields of
    ``StudentConfig`` (tile attention, kNN neighbourhood, ITA prototypes, DPC-KNN, ω clamp ...).

    Attributes:
        dim: must equal its teacher's (SKD's MSE compares embeddings), so it is resolved by
            ``training.architectures.student_arch`` (``student.dim: null`` = the teacher's), not
            copied; the default is the teacher's default width.
    """

    dim: int = TeacherConfig.model_fields["dim"].default

    _positive_ints: ClassVar[tuple[str, ...]] = ("n_neighbours",)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_prototypes < 1 or self.dpc_k < 1:
            raise ValueError("n_prototypes and dpc_k must be >= 1")
        if self.tile_attention not in ("knn", "full"):
            raise ValueError(f"tile_attention must be 'knn' or 'full', got {self.tile_attention!r}")


@configured_by(BaselinesConfig, TeacherConfig)
class BaselineArch(Architecture):
    """The comparison baselines' shared architecture (``duopath.models.baseline_common``): the
    ``Arch`` fields of ``BaselinesConfig`` (smaller defaults than the teacher's; transformer
    depth, SNN width, MCAT gene tokens) and the gate of ``TeacherConfig``, which the baselines
    are compared under.

    One value builds any baseline; fields a model does not use are still validated.

    Attributes:
        n_genes_T / n_genes_E: gene-group sizes (>= 1 for the RNA models, which the model
            checks; histology-only models ignore them).
    """

    n_genes_T: int  # noqa: N815 - T/E are the paper's subspace names
    n_genes_E: int  # noqa: N815

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
