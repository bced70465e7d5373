"""What the report's survival plots show, computed apart from the drawing so it can be tested.

* Risk groups over the pooled out-of-fold predictions: each fold's test patients are split at
  that fold's OWN training-risk median (``duopath.evaluation.risk_groups``), then pooled. A cut
  chosen on the test predictions would always split 50/50 and flatter the model.
* Calibration of predicted survival at a landmark time: patients in quantile groups of their
  predicted S(t) (the curve from their own fold's model and bin edges), mean predicted S(t)
  against the Kaplan–Meier estimate of the same group at t.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from duopath.evaluation.cohort_tables import CohortTables
from duopath.evaluation.collect import FoldRun
from duopath.evaluation.curves import SurvivalCurve
from duopath.evaluation.metrics import survival_columns
from duopath.evaluation.risk_groups import RiskGroups, kaplan_meier, risk_groups

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- risk groups


@dataclass(frozen=True)
class PooledRiskGroups:
    """High/low risk groups of one model over all folds; ``groups`` None with ``reason`` if impossible.

    ``groups.threshold`` is NaN: every fold has its own cut, listed in ``thresholds``.
    """

    groups: RiskGroups | None
    reason: str | None
    thresholds: dict[int, float]
    n_patients: int


def pooled_risk_groups(runs: Sequence[FoldRun], quantile: float = 0.5) -> PooledRiskGroups:
    """Assign each fold's test patients with its training threshold, then compare the pooled groups.

    Needs every completed fold's ``inner_predictions.parquet`` (the training risks). The pooled
    log-rank test and Cox HR are those of the assigned group indicator (passed to
    :func:`risk_groups` as a 0/1 score with a 0.5 cut, so the same, tested code computes them).
    """
    highs, times, events, thresholds = [], [], [], {}
    for run in runs:
        pred = run.predictions
        if pred is None or pred.empty:
            continue
        inner = run.inner_predictions()
        if inner is None or "role" not in inner.columns:
            why = f"fold {run.fold}: no inner_predictions.parquet with training risks (threshold unknown)"
            return PooledRiskGroups(None, why, thresholds, 0)
        train_risk = inner.loc[inner["role"] == "train", "risk"].to_numpy(float)
        if train_risk.size == 0 or not np.isfinite(train_risk).all():
            why = f"fold {run.fold}: training risks missing or not finite"
            return PooledRiskGroups(None, why, thresholds, 0)
        fold_groups = risk_groups(train_risk, pred["time"], pred["event"], pred["risk"], quantile)
        thresholds[run.fold] = fold_groups.threshold
        highs.append(fold_groups.high)
        times.append(pred["time"].to_numpy(float))
        events.append(pred["event"].to_numpy(float))
    if not highs:
        return PooledRiskGroups(None, "no fold has test predictions", thresholds, 0)
    high = np.concatenate(highs)
    pooled = risk_groups([0.0, 1.0], np.concatenate(times), np.concatenate(events), high.astype(float))
    pooled = dataclasses.replace(pooled, threshold=math.nan)
    return PooledRiskGroups(pooled, None, thresholds, int(high.size))


# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Calibration:
    """Predicted vs observed S(landmark) per group; ``table`` None with ``reason`` if impossible.

    ``table`` columns: group (0 = lowest predicted survival), n, predicted (mean predicted
    S(t)), observed (KM S(t)), ci_low, ci_high (KM 95 % log-log), reason ("" when observed is
    defined).
    """

    landmark: float
    table: pd.DataFrame | None
    reason: str | None
    n_patients: int


def default_landmark(tables: CohortTables) -> float:
    """Median event time of the cohort: a time at which about half of the events have happened.

    Raises ValueError when the cohort has no observed event (no survival calibration possible).
    """
    p = tables.patients.dropna(subset=["time", "event"])
    ev = p.loc[p["event"] == 1, "time"]
    if ev.empty:
        raise ValueError("no observed event in the cohort: no landmark time")
    return float(ev.median())


def _km_at(time: np.ndarray, event: np.ndarray, t: float) -> tuple[float, float, float, str]:
    """KM S(t) and its CI for one group; NaN with a reason when follow-up ends before t."""
    km = kaplan_meier(time, event)
    i = int(np.searchsorted(km.time, t, side="right")) - 1
    if i < 0:
        return 1.0, 1.0, 1.0, ""
    if t > time.max() and km.survival[i] > 0:
        return math.nan, math.nan, math.nan, f"follow-up of this group ends at {time.max():.4g} < {t:.4g}"
    return float(km.survival[i]), float(km.ci_low[i]), float(km.ci_high[i]), ""


def landmark_calibration(
    runs: Sequence[FoldRun], landmark: float, max_groups: int = 10, min_group_size: int = 10
) -> Calibration:
    """Calibration of predicted S(``landmark``) over the pooled out-of-fold predictions.

    Groups: up to ``max_groups`` equal-size groups of predicted S(t) (deciles on a large cohort),
    at least ``min_group_size`` patients each where the cohort allows, else one group.
    """
    if not math.isfinite(landmark) or landmark <= 0:
        raise ValueError(f"landmark must be a positive time, got {landmark}")
    preds, times, events = [], [], []
    for run in runs:
        pred = run.predictions
        if pred is None or pred.empty:
            continue
        cols = survival_columns(pred)
        if not cols:
            return Calibration(landmark, None, "the model predicts a risk score only, no survival curves", 0)
        edges = run.bin_edges
        if edges is None:
            return Calibration(landmark, None, f"fold {run.fold}: metrics.json has no time_bins", 0)
        curve = SurvivalCurve.from_survival_columns(pred[cols].to_numpy(float), edges)
        preds.append(curve([landmark])[:, 0])
        times.append(pred["time"].to_numpy(float))
        events.append(pred["event"].to_numpy(float))
    if not preds:
        return Calibration(landmark, None, "no fold has test predictions", 0)
    s, t, e = np.concatenate(preds), np.concatenate(times), np.concatenate(events)
    n_groups = max(1, min(max_groups, s.size // min_group_size))
    order = np.argsort(s, kind="stable")
    rows = []
    for g, idx in enumerate(np.array_split(order, n_groups)):
        obs, lo, hi, why = _km_at(t[idx], e[idx], landmark)
        rows.append(
            {
                "group": g,
                "n": int(idx.size),
                "predicted": float(s[idx].mean()),
                "observed": obs,
                "ci_low": lo,
                "ci_high": hi,
                "reason": why,
            }
        )
    return Calibration(landmark, pd.DataFrame(rows), None, int(s.size))
