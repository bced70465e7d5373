"""Calibrated survival curves: the Kaplan–Meier null, within-bin interpolation, risk recalibration.

Why this module: a model can rank patients well (C-index) and still give survival curves that
are worse than a Kaplan–Meier curve that ignores every patient's data (integrated Brier score).
The discrete-time head says only *whether* a patient survives each of ~4 wide bins, and the
MCAT-style likelihood counts a patient censored inside a bin as having survived the whole bin,
so its curves sit too high and step late. Three things are here, all model-agnostic (they read
prediction frames, never a model):

* :func:`km_survival` — the **null**: the Kaplan–Meier curve of the fold's TRAINING patients,
  the same for every test patient. A model whose IBS is not below it says nothing about
  anyone's survival that the cohort's average curve did not.
* :func:`km_bin_hazards` — the same null as per-bin hazards: what a discrete-time survival head
  is initialised to (``duopath.models.experts``), so an untrained model draws this curve;
* :func:`interpolated_survival` — the model's own curves with a constant hazard within each bin
  (continuous-time reading of the discrete model) instead of a step at the bin's end.
* :class:`RiskRecalibration` — a one-covariate Cox model on the model's risk score:
  S_i(t) = exp(-H0(t) · exp(β z_i)), z the standardised risk. The slope β is fit on the fold's
  inner VALIDATION patients only (risks of patients the model did not train on, like the test
  patients'; never the test fold), ridge-penalised towards 0. The baseline H0 is a cohort-level
  quantity and is estimated from the most patients the fold allows without test patients: it is
  set so that the validation patients' *average* curve equals the Kaplan–Meier curve of the
  training and validation patients (``marginal``). Why not Breslow on the validation patients
  alone: ~20 % of a fold holds a handful of events, and a baseline from them is noisier than
  the null it should beat; why not Breslow with the training patients' risks: those are
  in-sample and over-spread. With β = 0 the curves are exactly that Kaplan–Meier: with little
  evidence the recalibration falls back to the null rather than overshoot it.

Times are in the sample sheet's unit; every function returns survival arrays [n, len(times)].
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from duopath.evaluation.curves import SurvivalCurve
from duopath.evaluation.result import as_scores, as_times, survival_data

log = logging.getLogger(__name__)

#: Ridge penalty on β (per standardised risk unit) of the recalibration: about one event's worth
#: of evidence that β = 0, so a validation split with a handful of events cannot produce wild
#: slopes. Fixed a priori (not tuned on any test fold).
RECALIBRATION_RIDGE = 1.0
#: Bounds of the Kaplan–Meier bin hazards (:func:`km_bin_hazards`): finite logits (about ±9.2).
KM_HAZARD_FLOOR = 1e-4
#: Fewer validation events than this: no slope is fit (β = 0, the validation Kaplan–Meier).
MIN_RECALIBRATION_EVENTS = 2


def step_function(knots: ArrayLike, values: ArrayLike, times: ArrayLike, before: float) -> np.ndarray:
    """Right-continuous step function: ``values[j]`` from ``knots[j]`` on, ``before`` earlier."""
    k = np.asarray(knots, dtype=float)
    v = np.asarray(values, dtype=float)
    t = np.asarray(times, dtype=float)
    if not k.size:
        return np.full(t.shape, float(before))
    idx = np.searchsorted(k, t, side="right") - 1
    return np.where(idx < 0, before, v[np.clip(idx, 0, None)])


def km_survival(train_time: ArrayLike, train_event: ArrayLike, times: ArrayLike, n: int) -> np.ndarray:
    """The Kaplan–Meier null: the training patients' KM at ``times``, repeated for ``n`` patients."""
    from sksurv.nonparametric import kaplan_meier_estimator

    t, e = survival_data(train_time, train_event, "train")
    if not e.any():
        curve = np.ones(np.asarray(times).shape)
    else:
        knots, surv = kaplan_meier_estimator(e, t)
        curve = step_function(knots, surv, times, before=1.0)
    return np.tile(curve, (n, 1))


def km_bin_hazards(train_time: ArrayLike, train_event: ArrayLike, bin_edges: ArrayLike,
                   floor: float = KM_HAZARD_FLOOR) -> np.ndarray:
    """The Kaplan–Meier null as a discrete-time model: hazards h [K] of the K bins ``bin_edges``.

    h_k = 1 - KM(end_k) / KM(e_k), so that prod_{j<=k} (1 - h_j) = KM(end_k): a head that outputs
    these hazards for every patient draws the training patients' Kaplan–Meier curve at the bin
    edges (the curve :func:`km_survival` scores as the null). ``end_k`` is e_{k+1}, and for the open
    last bin the longest training follow-up (where the Kaplan–Meier ends; the same end
    :func:`interpolated_survival` gives that bin). Why the training patients only: the hazards
    initialise a model of the fold (``duopath.training.architectures``), so they are fit data.
    Hazards are kept in [floor, 1 - floor] so their logits are finite (a bin without events, or a
    curve that reaches 0).
    """
    edges = np.asarray(bin_edges, dtype=float)
    if edges.ndim != 1 or edges.size < 2 or not (np.diff(edges) > 0).all():
        raise ValueError(f"bin_edges must be 1-D and strictly increasing, got {edges.tolist()}")
    ends = edges[1:].copy()
    if not np.isfinite(ends[-1]):
        ends[-1] = max(last_follow_up(train_time), edges[-2])
    s = np.concatenate([[1.0], km_survival(train_time, train_event, ends, 1)[0]])
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(s[:-1] > 0, 1.0 - s[1:] / s[:-1], 1.0)
    return np.clip(h, floor, 1.0 - floor)


def interpolated_survival(curve: SurvivalCurve, times: ArrayLike, last_end: float) -> np.ndarray:
    """S_i(t) with a constant hazard within each bin (geometric interpolation between edges).

    Inside bin k = [e_k, e_{k+1}): S(t) = S(e_k) · (S(e_{k+1}) / S(e_k))^((t - e_k) / (e_{k+1} - e_k)).
    The last bin has no end (e_K = inf); its hazard is spread over [e_{K-1}, ``last_end``] (the
    longest TRAINING follow-up: the model learnt nothing about later times), flat after it.
    """
    edges = curve.bin_edges.copy()
    if not np.isfinite(last_end) or last_end <= edges[-2]:
        raise ValueError(f"last_end {last_end} must lie beyond the last finite bin edge {edges[-2]}")
    if not np.isfinite(edges[-1]):
        edges[-1] = last_end
    t = np.clip(np.atleast_1d(np.asarray(times, dtype=float)), 0.0, edges[-1])
    k = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, edges.size - 2)
    frac = (t - edges[k]) / (edges[k + 1] - edges[k])
    s_lo = curve.surv_at_edges[:, k]
    s_hi = curve.surv_at_edges[:, k + 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(s_lo > 0, s_hi / s_lo, 0.0)
    return np.clip(s_lo * ratio ** frac[None, :], 0.0, 1.0)


@dataclass(frozen=True)
class RiskRecalibration:
    """S(t | risk) = exp(-H0(t) · exp(β · (risk - center) / scale)); see the module docstring."""

    beta: float
    center: float
    scale: float
    knots: np.ndarray  # distinct event times of the fit data
    cumhaz: np.ndarray  # Breslow H0 at each knot
    n_fit: int
    n_events: int

    def survival(self, risk: ArrayLike, times: ArrayLike) -> np.ndarray:
        r = as_scores(risk, np.asarray(risk).shape[0])
        z = (r - self.center) / self.scale
        h0 = step_function(self.knots, self.cumhaz, times, before=0.0)
        return np.exp(-np.outer(np.exp(self.beta * z), h0))

    def to_dict(self) -> dict:
        return {"beta": self.beta, "center": self.center, "scale": self.scale,
                "n_fit": self.n_fit, "n_events": self.n_events}


def _cox_newton(z: np.ndarray, t: np.ndarray, e: np.ndarray, ridge: float) -> float:
    """β maximising the ridge-penalised Breslow partial likelihood of one covariate (Newton)."""
    order = np.argsort(-t, kind="mergesort")  # descending time: risk sets are prefixes
    z, t, e = z[order], t[order], e[order]
    beta = 0.0
    for _ in range(50):
        w = np.exp(beta * z)
        s0, s1, s2 = np.cumsum(w), np.cumsum(w * z), np.cumsum(w * z * z)
        # ties: every patient with t_j >= t_i is at risk, i.e. the prefix up to the LAST tie
        last = np.searchsorted(-t, -t, side="right") - 1
        s0, s1, s2 = s0[last], s1[last], s2[last]
        grad = float(np.sum(e * (z - s1 / s0))) - ridge * beta
        hess = -float(np.sum(e * (s2 / s0 - (s1 / s0) ** 2))) - ridge
        step = grad / hess
        beta -= step
        if abs(step) < 1e-10:
            break
    return float(beta)


def _marginal_baseline(z: np.ndarray, beta: float, knots: np.ndarray, km: np.ndarray) -> np.ndarray:
    """H0 at each knot such that mean_i exp(-H0 · exp(β z_i)) equals the Kaplan–Meier value there.

    The mean is decreasing in H0, so a bisection on log H0 finds the unique root.
    """
    w = np.exp(beta * z)
    target = np.clip(km, 1e-12, 1.0)
    lo = np.full(knots.size, -30.0)
    hi = np.full(knots.size, 30.0)
    for _ in range(100):
        mid = (lo + hi) / 2
        mean_s = np.exp(-np.exp(mid)[:, None] * w[None, :]).mean(axis=1)
        too_high = mean_s > target  # survival still above the target: more hazard
        lo = np.where(too_high, mid, lo)
        hi = np.where(too_high, hi, mid)
    h0 = np.exp((lo + hi) / 2)
    return np.where(target >= 1.0, 0.0, np.maximum.accumulate(h0))


def fit_recalibration(
    risk: ArrayLike,
    time: ArrayLike,
    event: ArrayLike,
    *,
    marginal: tuple[ArrayLike, ArrayLike] | None = None,
    ridge: float = RECALIBRATION_RIDGE,
) -> RiskRecalibration:
    """Fit :class:`RiskRecalibration`: β on held-out (inner validation) risks and outcomes, H0
    matched to the Kaplan–Meier of ``marginal`` (time, event; default: the same patients).
    """
    t, e = survival_data(time, event, "calibration")
    r = as_scores(risk, t.shape[0])
    if t.shape[0] < 2:
        raise ValueError(f"recalibration needs >= 2 patients, got {t.shape[0]}")
    center = float(np.mean(r))
    scale = float(np.std(r)) or 1.0
    z = (r - center) / scale
    n_events = int(e.sum())
    beta = _cox_newton(z, t, e.astype(float), ridge) if n_events >= MIN_RECALIBRATION_EVENTS else 0.0
    if n_events < MIN_RECALIBRATION_EVENTS:
        log.warning("recalibration: %d event(s) in the fit data; slope fixed at 0 (Kaplan–Meier)",
                    n_events)
    from sksurv.nonparametric import kaplan_meier_estimator

    m_t, m_e = (t, e) if marginal is None else survival_data(*marginal, "marginal")
    if m_e.any():
        knots, km = kaplan_meier_estimator(m_e, m_t)
        keep = np.isin(knots, m_t[m_e])  # S only changes at event times
        knots, km = knots[keep], km[keep]
    else:
        knots, km = np.zeros(0), np.zeros(0)
    cumhaz = _marginal_baseline(z, beta, knots, km)
    return RiskRecalibration(beta, center, scale, knots, cumhaz, int(t.shape[0]), n_events)


def last_follow_up(train_time: ArrayLike) -> float:
    """The longest training follow-up (the end of the last bin for interpolation)."""
    return float(np.max(as_times(train_time, "train time")))


# --------------------------------------------------------------------------- one fold's IBS variants

#: IBS metrics of a survival fold beside the model's own ``ibs`` (step curves):
#: ``ibs_km`` the Kaplan–Meier null, ``ibs_interp`` the own curves with constant within-bin
#: hazards, ``ibs_recal`` the risk recalibrated on the inner validation patients.
CALIBRATION_METRICS = ("ibs_km", "ibs_interp", "ibs_recal")


def calibration_metrics(
    train_time: ArrayLike,
    train_event: ArrayLike,
    time: ArrayLike,
    event: ArrayLike,
    risk: ArrayLike,
    *,
    curve: SurvivalCurve | None = None,
    val: tuple[ArrayLike, ArrayLike, ArrayLike] | None = None,
) -> dict:
    """The :data:`CALIBRATION_METRICS` of one test fold, on the fold's default time grid.

    ``curve``: the model's discrete-time curves of the test patients (None for a risk-only
    model: ``ibs_interp`` undefined). ``val``: (risk, time, event) of the inner VALIDATION
    patients, what the recalibration's slope is fit on (None: ``ibs_recal`` undefined); its
    baseline matches the Kaplan–Meier of the training and validation patients together.
    """
    from duopath.evaluation.result import undefined
    from duopath.evaluation.survival import integrated_brier_score, time_grid

    t, e = survival_data(time, event)
    grid = time_grid(train_time, t, e)
    if not grid.ok:
        return {m: undefined(m, str(grid.reason)) for m in CALIBRATION_METRICS}
    n = t.shape[0]

    def ibs(surv: np.ndarray):
        return integrated_brier_score(train_time, train_event, t, e, surv, grid.times)

    out = {"ibs_km": ibs(km_survival(train_time, train_event, grid.times, n))}
    if curve is None:
        out["ibs_interp"] = undefined("ibs_interp", "the model predicts no discrete-time curves")
    else:
        out["ibs_interp"] = ibs(interpolated_survival(curve, grid.times, last_follow_up(train_time)))
    if val is None:
        out["ibs_recal"] = undefined("ibs_recal", "no inner validation predictions to fit on")
    else:
        v_risk, v_time, v_event = val
        if len(np.asarray(v_time)) < 2:
            out["ibs_recal"] = undefined("ibs_recal", "fewer than 2 validation patients")
        else:
            marginal = (np.concatenate([np.asarray(train_time, float), np.asarray(v_time, float)]),
                        np.concatenate([np.asarray(train_event, float), np.asarray(v_event, float)]))
            recal = fit_recalibration(v_risk, v_time, v_event, marginal=marginal)
            out["ibs_recal"] = ibs(recal.survival(risk, grid.times))
    return out
