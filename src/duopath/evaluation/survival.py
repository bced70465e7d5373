"""Survival metrics on one held-out fold: Harrell's C, Uno's C, time-dependent AUC, IBS.

Conventions (the same in every function here):
* ``risk``: higher = worse prognosis (earlier event). For the discrete-time models this is
  ``-sum_k S(t_k)``; for Cox models the linear predictor. scikit-survival takes it as is.
* ``event``: 1/True = event observed, 0/False = censored.
* ``train_time`` / ``train_event``: the TRAINING patients of the same fold. Uno's C, the
  time-dependent AUC and the Brier score weight test patients by the inverse probability of
  being censored, and that censoring distribution must come from the training data (the test
  fold is what is being scored). Uno's tau and the time grid are also set from it.

Every metric returns :class:`MetricResult` (NaN plus a reason when undefined); invalid inputs
raise ``ValueError``. The reasons are checked *before* calling scikit-survival rather than by
catching its exceptions, so an unexpected error there still surfaces as an error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from sksurv.metrics import (
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
)
from sksurv.metrics import (
    integrated_brier_score as _sksurv_ibs,
)

from duopath.evaluation.curves import SurvivalCurve
from duopath.evaluation.result import (
    MetricResult,
    as_scores,
    as_times,
    computed,
    structured,
    survival_data,
    undefined,
)

#: Uno's C is truncated at this quantile of the training follow-up times (DESIGN.md).
UNO_TAU_QUANTILE = 0.75
#: Quantile levels of the test follow-up times that span the default evaluation grid.
GRID_QUANTILES = (0.1, 0.8)
GRID_POINTS = 20

# --------------------------------------------------------------------------- concordance


def _no_comparable_pair(time: np.ndarray, event: np.ndarray) -> bool:
    """True when no (event i, j) pair has t_j > t_i or a censored j tied at t_i (sksurv's rule).

    The earliest event has the largest set of candidate partners, so checking it suffices.
    """
    if not event.any():
        return True
    t0 = time[event].min()
    return not ((time > t0).any() or ((time == t0) & ~event).any())


def harrell_c(time: ArrayLike, event: ArrayLike, risk: ArrayLike) -> MetricResult:
    """Harrell's concordance index (``sksurv.metrics.concordance_index_censored``).

    Fraction of comparable pairs (the earlier time is an event) in which the earlier patient has
    the higher risk; risk ties count 1/2. Depends on the censoring distribution of the fold,
    which is why Uno's C is reported next to it.
    """
    t, e = survival_data(time, event)
    r = as_scores(risk, t.shape[0])
    if t.shape[0] < 2:
        return undefined("Harrell's C", f"{t.shape[0]} test patient(s), need >= 2")
    if not e.any():
        return undefined("Harrell's C", "no events in the test fold")
    if _no_comparable_pair(t, e):
        return undefined("Harrell's C", "no comparable pair (no follow-up after the earliest event)")
    return computed(concordance_index_censored(e, t, r)[0])


def uno_tau(train_time: ArrayLike, quantile: float = UNO_TAU_QUANTILE) -> float:
    """Truncation time of Uno's C: the ``quantile`` of ALL training follow-up times.

    All times, events and censored alike: tau must lie where the censoring distribution is
    still well estimated, and that is a property of follow-up, not of events.
    """
    return float(np.quantile(as_times(train_time, "train time"), quantile))


def _train_problem(train_t: np.ndarray, train_e: np.ndarray) -> str | None:
    if train_t.shape[0] < 2:
        return "fewer than 2 training patients to estimate the censoring distribution"
    if not train_e.any():
        return "no events among the training patients"
    return None


def uno_c(
    train_time: ArrayLike,
    train_event: ArrayLike,
    time: ArrayLike,
    event: ArrayLike,
    risk: ArrayLike,
    tau: float | None = None,
) -> MetricResult:
    """Uno's IPCW concordance truncated at ``tau`` (``sksurv.metrics.concordance_index_ipcw``).

    ``tau`` defaults to :func:`uno_tau` of the training times. Why truncate: the IPCW weights
    1/G(t)^2 explode where few training patients remain under follow-up; beyond tau the
    estimate would be driven by a handful of patients.
    """
    tr_t, tr_e = survival_data(train_time, train_event, "train")
    t, e = survival_data(time, event)
    r = as_scores(risk, t.shape[0])
    if (problem := _train_problem(tr_t, tr_e)) is not None:
        return undefined("Uno's C", problem)
    tau = uno_tau(tr_t) if tau is None else float(tau)
    if tau > tr_t.max():
        return undefined("Uno's C", f"tau={tau:g} lies beyond the training follow-up (max {tr_t.max():g})")
    if t.shape[0] < 2:
        return undefined("Uno's C", f"{t.shape[0]} test patient(s), need >= 2")
    if not e.any():
        return undefined("Uno's C", "no events in the test fold")
    before = e & (t < tau)
    if not before.any():
        return undefined("Uno's C", f"no test events before tau={tau:g}")
    if _no_comparable_pair(t, before):
        return undefined("Uno's C", f"no comparable pair among test events before tau={tau:g}")
    value, *_ = concordance_index_ipcw(structured(tr_t, tr_e), structured(t, e), r, tau=tau)
    return computed(value)


# --------------------------------------------------------------------------- time grid


@dataclass(frozen=True)
class TimeGrid:
    """Evaluation times for td-AUC and IBS, or an empty grid and the reason."""

    times: np.ndarray
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


def _grid_window(tr_t: np.ndarray, t: np.ndarray, e: np.ndarray) -> tuple[float, float] | str:
    """[lo, hi) where td-AUC and Brier are estimable, or the reason there is none.

    lo: the first test event (before it there are no cases), not before the first training
    time. hi (exclusive): the last test time (after it there are no controls) and the last
    training time (beyond it the censoring distribution G is not estimated).
    """
    if not e.any():
        return "no events in the test fold"
    lo = max(float(t[e].min()), float(tr_t.min()))
    hi = min(float(t.max()), float(tr_t.max()))
    if not lo < hi:
        return f"no interior time: first test event / training start {lo:g} >= end of follow-up {hi:g}"
    return lo, hi


def time_grid(
    train_time: ArrayLike,
    time: ArrayLike,
    event: ArrayLike,
    n_times: int = GRID_POINTS,
    quantiles: tuple[float, float] = GRID_QUANTILES,
) -> TimeGrid:
    """Interior evaluation grid: ``n_times`` quantiles of the TEST follow-up times.

    Quantile levels run evenly over ``quantiles`` (default 10 %–80 %, interior so that both
    cases and controls exist at every time), then the grid is clipped into the window where the
    metrics are estimable (see :func:`_grid_window`): points below the first test event are
    raised to it, points at or past the end of test or training follow-up are dropped, and
    duplicates removed. Fewer than 2 points left: empty grid with a reason (IBS integrates).
    """
    tr_t = as_times(train_time, "train time")
    t, e = survival_data(time, event)
    if not 0.0 <= quantiles[0] < quantiles[1] <= 1.0:
        raise ValueError(f"quantiles must satisfy 0 <= lo < hi <= 1, got {quantiles}")
    window = _grid_window(tr_t, t, e)
    if isinstance(window, str):
        return TimeGrid(np.empty(0), window)
    lo, hi = window
    q = np.quantile(t, np.linspace(quantiles[0], quantiles[1], n_times))
    q = np.unique(np.clip(q, lo, None))
    q = q[q < hi]
    if q.size < 2:
        return TimeGrid(np.empty(0), f"{q.size} grid time(s) inside the estimable window [{lo:g}, {hi:g})")
    return TimeGrid(q)


def _check_grid(tr_t: np.ndarray, t: np.ndarray, e: np.ndarray, times: ArrayLike) -> np.ndarray | str:
    grid = np.unique(np.asarray(times, dtype=float))
    if grid.ndim != 1 or grid.size < 2:
        return "need >= 2 distinct evaluation times"
    window = _grid_window(tr_t, t, e)
    if isinstance(window, str):
        return window
    lo, hi = window
    if grid[0] < lo or grid[-1] >= hi:
        return f"evaluation times [{grid[0]:g}, {grid[-1]:g}] leave the estimable window [{lo:g}, {hi:g})"
    return grid


def _censor_after_training(t: np.ndarray, e: np.ndarray, tr_t: np.ndarray) -> np.ndarray:
    """Administratively censor test follow-up at the last training time.

    Why: scikit-survival evaluates the training censoring distribution G at EVERY test time,
    and G is not defined past the last training time, so a single long-followed test patient
    (in k-fold CV the cohort's longest follow-up always lands in some test fold) would make the
    whole fold's td-AUC and IBS fail. For grid times t < last training time this changes
    nothing: such a patient is neither a case at t (time > t) nor does its control status or the
    test Kaplan–Meier estimate at t change. The tests check this invariance.
    """
    end = tr_t.max()
    late = t >= end
    if not late.any():
        return structured(t, e)
    return structured(np.where(late, end, t), e & ~late)


# --------------------------------------------------------------------------- td-AUC and IBS


@dataclass(frozen=True)
class TimeDependentAUC:
    """Cumulative/dynamic AUC(t) at ``times`` and its survival-weighted mean.

    ``auc`` is NaN where undefined (``mean.reason`` then says why, if the mean is too).
    """

    times: np.ndarray
    auc: np.ndarray
    mean: MetricResult


def time_dependent_auc(
    train_time: ArrayLike,
    train_event: ArrayLike,
    time: ArrayLike,
    event: ArrayLike,
    risk: ArrayLike,
    times: ArrayLike | None = None,
) -> TimeDependentAUC:
    """Cumulative/dynamic AUC(t) (``sksurv.metrics.cumulative_dynamic_auc``) and its mean.

    Cases at t: events by t; controls: still under follow-up after t. The mean is sksurv's,
    weighted by the drop of the test Kaplan–Meier curve between grid times. ``times`` defaults
    to :func:`time_grid`.
    """
    tr_t, tr_e = survival_data(train_time, train_event, "train")
    t, e = survival_data(time, event)
    r = as_scores(risk, t.shape[0])
    grid_in = np.asarray([] if times is None else times, dtype=float)

    def fail(reason: str) -> TimeDependentAUC:
        return TimeDependentAUC(grid_in, np.full(grid_in.shape, np.nan), undefined("mean td-AUC", reason))

    if (problem := _train_problem(tr_t, tr_e)) is not None:
        return fail(problem)
    if times is None:
        grid = time_grid(tr_t, t, e)
        if not grid.ok:
            return fail(str(grid.reason))
        checked: np.ndarray | str = grid.times
    else:
        checked = _check_grid(tr_t, t, e, times)
    if isinstance(checked, str):
        return fail(checked)
    auc, mean = cumulative_dynamic_auc(structured(tr_t, tr_e), _censor_after_training(t, e, tr_t), r, checked)
    return TimeDependentAUC(checked, np.asarray(auc, dtype=float), computed(mean))


def integrated_brier_score(
    train_time: ArrayLike,
    train_event: ArrayLike,
    time: ArrayLike,
    event: ArrayLike,
    survival: SurvivalCurve | ArrayLike,
    times: ArrayLike | None = None,
) -> MetricResult:
    """IPCW integrated Brier score (``sksurv.metrics.integrated_brier_score``); lower is better.

    ``survival`` is a :class:`SurvivalCurve` (evaluated at the grid) or an array [n, len(times)]
    of S_i(t) at exactly ``times``. The integral is the trapezoid over the grid divided by its
    span, so it depends on the grid: compare models only on the same grid (the default grid
    depends on the fold's data only, never on the model).
    """
    tr_t, tr_e = survival_data(train_time, train_event, "train")
    t, e = survival_data(time, event)
    if (problem := _train_problem(tr_t, tr_e)) is not None:
        return undefined("IBS", problem)
    if times is None:
        if not isinstance(survival, SurvivalCurve):
            raise ValueError("pass the times at which the survival array was evaluated")
        grid = time_grid(tr_t, t, e)
        if not grid.ok:
            return undefined("IBS", str(grid.reason))
        checked: np.ndarray | str = grid.times
    else:
        checked = _check_grid(tr_t, t, e, times)
        if not isinstance(checked, str) and checked.size != np.asarray(times).size:
            raise ValueError("times must be distinct (the survival array has one column per time)")
    if isinstance(checked, str):
        return undefined("IBS", checked)
    if isinstance(survival, SurvivalCurve):
        surv = survival(checked)
    else:
        order = np.argsort(np.asarray(times, dtype=float))
        surv = np.asarray(survival, dtype=float)[:, order]
    if surv.shape != (t.shape[0], checked.size):
        raise ValueError(f"survival must be [{t.shape[0]}, {checked.size}], got {surv.shape}")
    if not np.isfinite(surv).all() or (surv < 0).any() or (surv > 1).any():
        raise ValueError("survival probabilities must lie in [0, 1]")
    return computed(_sksurv_ibs(structured(tr_t, tr_e), _censor_after_training(t, e, tr_t), surv, checked))
