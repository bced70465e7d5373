"""Model registry: name → builder, built from a plain kwargs mapping.

Why plain kwargs: the validated config models belong to ``duopath.config`` (added by the lead);
the registry only needs a mapping, so it stays usable from tests, notebooks and the CLI.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from duopath.config import BASELINE_MODELS
from duopath.models.baselines_fusion import MCAT, SNN, BilinearFusion, ConcatFusion
from duopath.models.baselines_wsi import ABMIL, TransMIL
from duopath.models.student import Student
from duopath.models.teacher import Teacher

ModelBuilder = Callable[..., nn.Module]

MODELS: dict[str, ModelBuilder] = {
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
"""Comparison baselines (DESIGN.md, "Baselines"): all take the same keyword arguments
(``baseline_common.Baseline``), so one config section builds any of them."""


def build_model(name: str, kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """Build model ``name`` from keyword arguments (a YAML section as a dict).

    Raises:
        KeyError: unknown model name (the message lists the known ones).
        TypeError: an unknown or missing argument (raised by the constructor, naming it).
    """
    try:
        builder = MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {sorted(MODELS)}") from None
    return builder(**dict(kwargs or {}))
