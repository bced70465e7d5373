"""The base of every config model (unknown keys are errors, a parsed config is immutable) and the
marker of the fields that are model architecture.

Its own module so that the per-stage config modules (``config``, ``config_rna``) share it
without importing each other.

Why a marker: a model's architecture (``duopath.models.arch``) is a frozen value stored with its
weights. Its hyper-parameters are not declared there a second time: each is a config field
annotated ``Arch[...]`` (``dim: Arch[int] = Field(128, ge=4)``), and the architecture class of
that section takes the field's name, type and default from it (``arch.configured_by``). Adding a
hyper-parameter is therefore one field in ``duopath.config`` (and its ``config.yaml`` value).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic.fields import FieldInfo

__all__ = ["ARCHITECTURE", "Arch", "StrictModel", "architecture_fields"]


class StrictModel(BaseModel):
    """Forbids unknown keys (a typo must fail before any work) and is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Keys of a section that say how its jobs are cut and run (job sizes, worker and thread
    #: counts), not what they compute: the workflow leaves them out of the settings it passes to
    #: a rule (a rerun trigger), so changing them re-runs nothing (workflow/Snakefile, settings).
    JOB_KEYS: ClassVar[frozenset[str]] = frozenset()


class _ArchitectureMarker:
    """The ``Annotated`` metadata of an architecture field (pydantic keeps it, validates nothing
    with it, and leaves the JSON schema unchanged)."""

    def __repr__(self) -> str:
        return "ARCHITECTURE"


ARCHITECTURE = _ArchitectureMarker()

T = TypeVar("T")
Arch = Annotated[T, ARCHITECTURE]
"""``Arch[int]``: a config field that is a hyper-parameter of the section's model architecture."""


def architecture_fields(section: type[BaseModel]) -> dict[str, FieldInfo]:
    """The fields of ``section`` marked ``Arch[...]``, in declaration order."""
    return {name: info for name, info in section.model_fields.items()
            if any(m is ARCHITECTURE for m in info.metadata)}
