"""Discrete-time model output as survival functions S_i(t), for the Brier score and plots.

A discrete-time survival head predicts hazards h_ik per training-fit time bin k; the metrics
(IBS, calibration at a landmark) need S_i(t) at arbitrary times. This module is the one place
that makes that step, so every consumer uses the same interpolation rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True)
class SurvivalCurve:
    """Per-patient step survival functions S_i(t) of a discrete-time model.

    ``bin_edges`` [K+1] are the training-fit bin edges ``[e_0=0, e_1, ..., e_K=inf]``;
    ``surv_at_edges`` [n, K+1] holds S_i(e_k): column 0 is 1 and column k+1 is
    ``prod_{j<=k} (1 - h_ij)``, i.e. the model's probability of surviving bin k.

    Why a right-continuous step that drops at the END of each bin: the discrete-time model
    only says whether a patient survives a whole bin, not when inside it; S(t) for t inside
    bin k is therefore the probability of having survived the bins before it, and it steps to
    S(e_{k+1}) when the bin is over. The last bin [e_{K-1}, inf) never ends, so at finite
    times S never drops below S(e_{K-1}) (the last hazard does not enter S at finite t).
    """

    bin_edges: np.ndarray
    surv_at_edges: np.ndarray

    def __post_init__(self) -> None:
        edges = np.asarray(self.bin_edges, dtype=float)
        surv = np.asarray(self.surv_at_edges, dtype=float)
        if edges.ndim != 1 or edges.size < 2 or np.isnan(edges).any() or edges[0] < 0:
            raise ValueError("bin_edges must be 1-D, >= 2 values, first >= 0")
        if not (np.diff(edges) > 0).all():
            raise ValueError(f"bin_edges must be strictly increasing, got {edges.tolist()}")
        if surv.ndim != 2 or surv.shape[1] != edges.size:
            raise ValueError(f"surv_at_edges must be [n, {edges.size}], got shape {surv.shape}")
        if not np.isfinite(surv).all() or (surv < 0).any() or (surv > 1).any():
            raise ValueError("survival probabilities must lie in [0, 1]")
        if (np.diff(surv, axis=1) > 1e-12).any():
            raise ValueError("survival curves must be non-increasing")
        object.__setattr__(self, "bin_edges", edges)
        object.__setattr__(self, "surv_at_edges", surv)

    @property
    def n_patients(self) -> int:
        return int(self.surv_at_edges.shape[0])

    def __call__(self, times: ArrayLike) -> np.ndarray:
        """S_i(t) for every patient i and time t: array [n, len(times)].

        Times before ``e_0`` get 1 (nothing has happened yet).
        """
        t = np.atleast_1d(np.asarray(times, dtype=float))
        if t.ndim != 1 or not np.isfinite(t).all() or (t < 0).any():
            raise ValueError("times must be a 1-D array of finite values >= 0")
        # index of the last edge <= t; -1 when t < e_0
        idx = np.searchsorted(self.bin_edges, t, side="right") - 1
        out = self.surv_at_edges[:, np.clip(idx, 0, None)]
        out[:, idx < 0] = 1.0
        return out

    @classmethod
    def from_survival_columns(cls, surv: ArrayLike, bin_edges: ArrayLike) -> SurvivalCurve:
        """From ``predictions.parquet``'s ``surv_0..surv_{K-1}`` = cumprod(1 - h) (S after each bin)."""
        s = np.asarray(surv, dtype=float)
        if s.ndim != 2:
            raise ValueError(f"surv must be [n, K], got shape {s.shape}")
        return cls(np.asarray(bin_edges, dtype=float), np.hstack([np.ones((s.shape[0], 1)), s]))


def survival_curve_from_hazards(hazards: ArrayLike, bin_edges: ArrayLike) -> SurvivalCurve:
    """Step survival functions from discrete-time hazards [n, K] and the K+1 training bin edges.

    S(e_0) = 1 and S(e_{k+1}) = prod_{j<=k} (1 - h_j), the same cumprod the training loss uses.
    """
    h = np.asarray(hazards, dtype=float)
    edges = np.asarray(bin_edges, dtype=float)
    if h.ndim != 2:
        raise ValueError(f"hazards must be [n, K], got shape {h.shape}")
    if edges.ndim != 1 or edges.size != h.shape[1] + 1:
        raise ValueError(f"need K+1 = {h.shape[1] + 1} bin edges for K = {h.shape[1]} bins, got {edges.size}")
    if not np.isfinite(h).all() or (h < 0).any() or (h > 1).any():
        raise ValueError("hazards must lie in [0, 1]")
    return SurvivalCurve.from_survival_columns(np.cumprod(1.0 - h, axis=1), edges)
