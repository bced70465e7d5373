"""High/low risk groups of a held-out fold: log-rank test, Cox hazard ratio, Kaplan–Meier arrays.

Why the threshold comes from the TRAINING risks: a cut at the test fold's own median is set by
the very predictions being evaluated and always splits the fold 50/50, whereas a clinic applying
the model gets one cut-off fixed beforehand.
Here the cut is the training-risk quantile (median by default) and is applied unchanged to the
test risks; ``high`` means ``risk > threshold`` (ties go to the low group).

Plotting is done elsewhere; this module returns arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter
from lifelines.statistics import logrank_test
from numpy.typing import ArrayLike
from sksurv.nonparametric import kaplan_meier_estimator

from duopath.evaluation.result import MetricResult, as_scores, computed, survival_data, undefined


@dataclass(frozen=True)
class KaplanMeier:
    """Kaplan–Meier step curve of one group: S just after each distinct time, 95 % log-log CI."""

    time: np.ndarray
    survival: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_at_risk: np.ndarray  # patients with follow-up >= time (the usual risk-table numbers)


@dataclass(frozen=True)
class RiskGroups:
    """Risk stratification of one test fold; see the module docstring for the threshold rule."""

    threshold: float
    high: np.ndarray  # bool per test patient, in input order
    n_low: int
    n_high: int
    events_low: int
    events_high: int
    logrank_p: MetricResult
    hazard_ratio: MetricResult  # high vs low, from a Cox model on the group indicator
    hr_ci_low: float  # NaN when the hazard ratio is undefined
    hr_ci_high: float
    km: dict[str, KaplanMeier | None]  # "low" / "high"; None for an empty group


def kaplan_meier(time: ArrayLike, event: ArrayLike) -> KaplanMeier:
    """Kaplan–Meier estimate (``sksurv.nonparametric.kaplan_meier_estimator``) with log-log CI."""
    t, e = survival_data(time, event)
    if t.size == 0:
        raise ValueError("Kaplan–Meier of an empty group")
    if e.any():
        ut, surv, ci = kaplan_meier_estimator(e, t, conf_type="log-log")
        low, high = ci
    else:  # sksurv's CI needs an event; with none, S is 1 with no uncertainty to show
        ut = np.unique(t)
        surv = np.ones(ut.size)
        low, high = surv.copy(), surv.copy()
    at_risk = (t[None, :] >= ut[:, None]).sum(axis=1)
    return KaplanMeier(ut, surv, low, high, at_risk)


def risk_groups(
    train_risk: ArrayLike,
    time: ArrayLike,
    event: ArrayLike,
    risk: ArrayLike,
    quantile: float = 0.5,
) -> RiskGroups:
    """Split test patients at the ``quantile`` of the training risks; compare the two groups.

    Log-rank p: ``lifelines.statistics.logrank_test``. Hazard ratio (high vs low) and its 95 %
    Wald CI: ``lifelines.CoxPHFitter`` with the 0/1 group as the only covariate. A group
    without events makes the Cox estimate diverge (monotone likelihood), so the HR is NaN with
    that reason rather than a huge number.
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must lie in (0, 1), got {quantile}")
    tr = np.asarray(train_risk, dtype=float)
    if tr.ndim != 1 or tr.size == 0 or not np.isfinite(tr).all():
        raise ValueError("train_risk must be a non-empty 1-D array of finite values")
    t, e = survival_data(time, event)
    r = as_scores(risk, t.shape[0])
    threshold = float(np.quantile(tr, quantile))
    high = r > threshold
    n_high, n_low = int(high.sum()), int((~high).sum())
    ev_high, ev_low = int(e[high].sum()), int(e[~high].sum())
    km = {
        "low": kaplan_meier(t[~high], e[~high]) if n_low else None,
        "high": kaplan_meier(t[high], e[high]) if n_high else None,
    }

    def result(p: MetricResult, hr: MetricResult, ci: tuple[float, float]) -> RiskGroups:
        return RiskGroups(threshold, high, n_low, n_high, ev_low, ev_high, p, hr, ci[0], ci[1], km)

    nan_ci = (float("nan"), float("nan"))
    if n_high == 0 or n_low == 0:
        why = f"all {t.size} test patients fall in the {'high' if n_low == 0 else 'low'}-risk group"
        return result(undefined("log-rank p", why), undefined("hazard ratio", why), nan_ci)
    if ev_high + ev_low == 0:
        why = "no events in the test fold"
        return result(undefined("log-rank p", why), undefined("hazard ratio", why), nan_ci)
    p = computed(logrank_test(t[high], t[~high], event_observed_A=e[high], event_observed_B=e[~high]).p_value)
    if ev_high == 0 or ev_low == 0:
        why = f"no events in the {'high' if ev_high == 0 else 'low'}-risk group: Cox HR diverges"
        return result(p, undefined("hazard ratio", why), nan_ci)
    df = pd.DataFrame({"time": t, "event": e.astype(int), "high": high.astype(int)})
    row = CoxPHFitter().fit(df, duration_col="time", event_col="event").summary.loc["high"]
    ci = (float(row["exp(coef) lower 95%"]), float(row["exp(coef) upper 95%"]))
    return result(p, computed(row["exp(coef)"]), ci)
