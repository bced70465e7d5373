"""All metrics of one fold from ``predictions.parquet``-style frames, and pooled-metric callables.

Frame columns (one row per TEST patient of the fold):
* ``patient_id``, ``fold``;
* survival: ``risk`` (higher = worse), ``time``, ``event`` (1 = event observed) and, for the
  discrete-time models, ``surv_0 .. surv_{K-1}`` = S after bin k = cumprod(1 - h)[k], i.e.
  S at bin edge e_{k+1} of the fold's TRAINING bin edges (passed separately);
* classification: ``label`` and ``prob_<class>`` per class (column order = class order; a
  binary task's positive class is the second column unless said otherwise).

The training survival data (``train_time``, ``train_event``) come from the sample sheet and the
split, not from the predictions: Uno's C, td-AUC and IBS need the training censoring
distribution, and Uno's tau and the time grid are set from the training times.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
from numpy.typing import ArrayLike

from duopath.evaluation.classification import (
    CLASSIFICATION_METRICS,
    classification_inputs,
    classification_metrics,
)
from duopath.evaluation.curves import SurvivalCurve
from duopath.evaluation.pairwise import PairwiseRatios, auc_pairs, harrell_pairs
from duopath.evaluation.result import MetricResult, undefined
from duopath.evaluation.survival import (
    harrell_c,
    integrated_brier_score,
    time_dependent_auc,
    uno_c,
)

SURVIVAL_METRICS = ("c_harrell", "c_uno", "td_auc_mean", "ibs")

_SURV_COL = re.compile(r"^surv_(\d+)$")


def _require(pred: pd.DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in pred.columns]
    if missing:
        raise ValueError(f"predictions lack columns {missing} (have {list(pred.columns)})")


def survival_columns(pred: pd.DataFrame) -> list[str]:
    """``surv_<k>`` columns ordered by k; refuses gaps (a missing bin would shift every edge)."""
    found = sorted((int(m.group(1)), c) for c in pred.columns if (m := _SURV_COL.match(str(c))))
    if [k for k, _ in found] != list(range(len(found))):
        raise ValueError(f"surv_<k> columns must be surv_0..surv_{{K-1}}, got {[c for _, c in found]}")
    return [c for _, c in found]


def survival_fold_metrics(
    train_time: ArrayLike,
    train_event: ArrayLike,
    time: ArrayLike,
    event: ArrayLike,
    risk: ArrayLike,
    survival: SurvivalCurve | None = None,
    times: ArrayLike | None = None,
) -> dict[str, MetricResult]:
    """Harrell's C, Uno's C (tau = training 75th percentile), mean td-AUC and IBS of one fold.

    ``times`` defaults to :func:`duopath.evaluation.survival.time_grid` of the fold, which
    depends on the fold's data only, so every model is scored on the same grid. Without
    ``survival`` curves (a risk-only model) the IBS is NaN with that reason.
    """
    out = {
        "c_harrell": harrell_c(time, event, risk),
        "c_uno": uno_c(train_time, train_event, time, event, risk),
        "td_auc_mean": time_dependent_auc(train_time, train_event, time, event, risk, times).mean,
    }
    if survival is None:
        out["ibs"] = undefined("IBS", "the model predicts a risk score only, no survival curves")
    else:
        out["ibs"] = integrated_brier_score(train_time, train_event, time, event, survival, times)
    return out


def evaluate_survival_predictions(
    pred: pd.DataFrame,
    train_time: ArrayLike,
    train_event: ArrayLike,
    bin_edges: ArrayLike | None = None,
) -> dict[str, MetricResult]:
    """:func:`survival_fold_metrics` from a predictions frame (``surv_<k>`` need ``bin_edges``)."""
    _require(pred, ("risk", "time", "event"))
    cols = survival_columns(pred)
    curve = None
    if cols:
        if bin_edges is None:
            raise ValueError("predictions carry surv_<k> columns: pass the fold's training bin edges")
        curve = SurvivalCurve.from_survival_columns(pred[cols].to_numpy(float), bin_edges)
    return survival_fold_metrics(
        train_time,
        train_event,
        pred["time"].to_numpy(float),
        pred["event"].to_numpy(),
        pred["risk"].to_numpy(float),
        curve,
    )


def probability_columns(pred: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(``prob_<class>`` columns in frame order, class names)."""
    cols = [c for c in pred.columns if str(c).startswith("prob_")]
    if len(cols) < 2:
        raise ValueError(f"need >= 2 prob_<class> columns, got {cols}")
    return cols, [str(c)[len("prob_") :] for c in cols]


def evaluate_classification_predictions(
    pred: pd.DataFrame, positive_class: object | None = None
) -> dict[str, MetricResult]:
    """:func:`classification_metrics` from ``label`` and ``prob_<class>`` columns.

    Labels are matched to the column suffixes as strings (label 1 ↔ ``prob_1``).
    """
    _require(pred, ("label",))
    cols, classes = probability_columns(pred)
    return classification_metrics(
        pred["label"].to_numpy(), pred[cols].to_numpy(float), classes, positive_class
    )


# --------------------------------------------------------------------------- pooled metrics


@dataclass(frozen=True)
class PooledMetric:
    """A pooled metric: ``frame -> MetricResult``, plus its pair sums when it is a rank metric.

    ``pairs`` (frame -> :class:`~duopath.evaluation.pairwise.PairwiseRatios`) lets the paired
    bootstrap score a resample with two matrix products instead of re-running the metric on a
    resampled frame; the observed value always comes from ``score``, the reference code.
    """

    score: Callable[[pd.DataFrame], MetricResult]
    pairs: Callable[[pd.DataFrame], PairwiseRatios] | None = None

    def __call__(self, pred: pd.DataFrame) -> MetricResult:
        return self.score(pred)


def _harrell(pred: pd.DataFrame) -> MetricResult:
    _require(pred, ("risk", "time", "event"))
    return harrell_c(pred["time"].to_numpy(float), pred["event"].to_numpy(), pred["risk"].to_numpy(float))


def _harrell_pairs(pred: pd.DataFrame) -> PairwiseRatios:
    _require(pred, ("risk", "time", "event"))
    return harrell_pairs(pred["time"].to_numpy(float), pred["event"].to_numpy(), pred["risk"].to_numpy(float))


#: Harrell's C over concatenated out-of-fold predictions (for the paired bootstrap).
pooled_harrell_c = PooledMetric(_harrell, _harrell_pairs)


def pooled_classification_metric(name: str, positive_class: object | None = None) -> PooledMetric:
    """A :class:`PooledMetric` for one classification metric (e.g. ``"auc"``; AUC has pair sums)."""

    if name not in CLASSIFICATION_METRICS:
        raise ValueError(f"unknown classification metric {name!r}; choose from {CLASSIFICATION_METRICS}")

    def metric(pred: pd.DataFrame) -> MetricResult:
        return evaluate_classification_predictions(pred, positive_class)[name]

    def pairs(pred: pd.DataFrame) -> PairwiseRatios:
        _require(pred, ("label",))
        cols, classes = probability_columns(pred)
        y, p, pos = classification_inputs(pred["label"].to_numpy(), pred[cols].to_numpy(float),
                                          classes, positive_class)
        return auc_pairs(y, p, pos)

    return PooledMetric(metric, pairs if name == "auc" else None)
