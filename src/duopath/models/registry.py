"""Model registry: name → model class, built from its architecture or from that as plain JSON.

Every model is a ``MultiExpertModel`` built from one architecture value (``duopath.models.arch``);
a checkpoint stores that value as JSON (``Architecture.to_json``), so :func:`build_model`
rebuilds any trained model from its name and that JSON, without the config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from duopath.config import BASELINE_MODELS
from duopath.models.arch import Architecture
from duopath.models.baselines_fusion import MCAT, SNN, BilinearFusion, ConcatFusion
from duopath.models.baselines_wsi import ABMIL, TransMIL
from duopath.models.experts import MultiExpertModel
from duopath.models.student import Student
from duopath.models.teacher import Teacher

MODELS: dict[str, type[MultiExpertModel]] = {
    "teacher": Teacher,
    "student": Student,
    # baselines: names and the data each needs are duopath.config.BASELINE_MODELS
    "abmil": ABMIL,
    "transmil": TransMIL,
    "snn": SNN,
    "concat": ConcatFusion,
    "bilinear": BilinearFusion,
    "mcat": MCAT,
}

BASELINES: tuple[str, ...] = tuple(BASELINE_MODELS)
"""Comparison baselines (DESIGN.md, "Baselines"): all built from the same ``BaselineArch``, so
one config section builds any of them."""


def model_class(name: str) -> type[MultiExpertModel]:
    """The class registered as ``name`` (KeyError listing the known names otherwise)."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {sorted(MODELS)}") from None


def build_model(name: str, arch: Architecture | Mapping[str, Any]) -> MultiExpertModel:
    """Build model ``name`` from its architecture, or from that architecture's JSON (a mapping).

    Raises:
        KeyError: unknown model name (the message lists the known ones).
        TypeError: an unknown or missing field (naming it), or an architecture of another family.
        ValueError: a field out of range (the architecture's own checks).
    """
    cls = model_class(name)
    if not isinstance(arch, Architecture):
        arch = cls.arch_type.from_json(arch)
    return cls(arch)
