"""The base of every config model: unknown keys are errors and a parsed config is immutable.

Its own module so that the per-stage config modules (``config``, ``config_rna``) share it
without importing each other.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Forbids unknown keys (a typo must fail before any work) and is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
