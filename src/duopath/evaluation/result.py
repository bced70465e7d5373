"""The value type every metric returns, and the input checks the metric modules share.

Why a value *and* a reason: on small held-out folds a metric is regularly undefined (no event
in the fold, a class absent, no comparable pair). Returning 0 would bias the fold mean, raising
would stop a cohort's report over one fold, and a bare NaN leaves the reader guessing. So an
undefined metric is ``MetricResult(nan, "why")`` and a warning is logged once, where it
happens; the reason travels into the long per-fold table and the report.

Two kinds of failure are kept apart on purpose:
* the *inputs are wrong* (lengths differ, NaN predictions, event flag not 0/1, negative times):
  that is a bug upstream, so it raises ``ValueError``;
* the inputs are valid but the *metric is undefined on them*: NaN with a reason.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

logger = logging.getLogger("duopath.evaluation")


@dataclass(frozen=True)
class MetricResult:
    """A metric value, or NaN and the reason it could not be computed.

    ``reason`` is None exactly when ``value`` is finite-or-computed; ``ok`` says which.
    """

    value: float
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.reason is None and math.isnan(self.value):
            raise ValueError("a NaN metric value needs a reason")
        if self.reason is not None and not math.isnan(self.value):
            raise ValueError(f"a computed metric value ({self.value}) must not carry a reason")

    @property
    def ok(self) -> bool:
        return self.reason is None

    def to_dict(self) -> dict[str, float | str | None]:
        """JSON-ready: NaN becomes None (JSON has no NaN), the reason is kept."""
        return {"value": None if not self.ok else float(self.value), "reason": self.reason}


def computed(value: float) -> MetricResult:
    """A successfully computed value (as a plain float, whatever numpy scalar came in)."""
    return MetricResult(float(value))


def undefined(metric: str, reason: str) -> MetricResult:
    """NaN with ``reason``; logs a warning so an undefined fold is visible in the run log."""
    logger.warning("%s is undefined: %s", metric, reason)
    return MetricResult(float("nan"), reason)


@contextmanager
def quiet_undefined() -> Iterator[None]:
    """Silence per-call 'undefined' warnings (bootstrap replicates); callers report a count."""
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


# --------------------------------------------------------------------------- input checks


def as_times(times: ArrayLike, name: str = "time") -> np.ndarray:
    """1-D float array of finite, non-negative follow-up times."""
    t = np.asarray(times, dtype=float)
    if t.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {t.shape}")
    if not np.isfinite(t).all() or (t < 0).any():
        raise ValueError(f"{name} must be finite and >= 0")
    return t


def as_events(events: ArrayLike, n: int, name: str = "event") -> np.ndarray:
    """Boolean event flags (True = event observed) from 0/1 or bool, length ``n``.

    Refuses anything but 0/1: a 'censored' flag passed by mistake would still be 0/1 and cannot
    be caught here, but 'dead'/'alive' strings or a 2 from a recoding slip can.
    """
    e = np.asarray(events)
    if e.ndim != 1 or e.shape[0] != n:
        raise ValueError(f"{name} must be 1-D of length {n}, got shape {e.shape}")
    if e.dtype != bool:
        ef = e.astype(float)
        if not np.isin(ef, (0.0, 1.0)).all():
            raise ValueError(f"{name} must be 0 (censored) or 1 (event observed)")
        e = ef.astype(bool)
    return e


def as_scores(scores: ArrayLike, n: int, name: str = "risk") -> np.ndarray:
    """1-D finite float scores of length ``n`` (NaN predictions are an upstream bug)."""
    s = np.asarray(scores, dtype=float)
    if s.ndim != 1 or s.shape[0] != n:
        raise ValueError(f"{name} must be 1-D of length {n}, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError(f"{name} contains NaN or inf")
    return s


def survival_data(time: ArrayLike, event: ArrayLike, name: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Validated (time, event) pair."""
    t = as_times(time, f"{name} time")
    return t, as_events(event, t.shape[0], f"{name} event")


def structured(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """scikit-survival's structured array (event: bool, time: float)."""
    y = np.empty(time.shape[0], dtype=[("event", bool), ("time", float)])
    y["event"] = event
    y["time"] = time
    return y
