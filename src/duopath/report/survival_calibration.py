"""Survival calibration for the report: IBS beside the Kaplan–Meier null, and mean curves vs KM.

Two figures, both from numbers the evaluation already computed or can recompute from a model's
fold outputs (``duopath.evaluation.calibration``):

* :func:`ibs_figure` — per model, the mean ± std over folds of the IBS of its own curves and of
  its recalibrated curves, with the Kaplan–Meier null as a reference line: a point right of
  the line is a curve worse than "no information".
* :func:`mean_curve_figure` — calibration in the large over time: the test patients' average
  predicted S(t) (own curves, recalibrated curves) against the pooled test patients' Kaplan–Meier
  with its 95 % CI. A curve far below (or above) the KM band is what a bad IBS looks like.

The HTML page (``report/html*.py``) decides where they go; they take plain inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from duopath.evaluation.calibration import fit_recalibration
from duopath.evaluation.cohort_tables import CohortTables
from duopath.evaluation.collect import FoldRun
from duopath.evaluation.curves import SurvivalCurve
from duopath.evaluation.metrics import survival_columns
from duopath.evaluation.risk_groups import kaplan_meier
from duopath.report.plots import message_figure, new_figure

IBS_VARIANTS = (("ibs", "own curves", "#d62728"), ("ibs_recal", "recalibrated", "#2c7bb6"))


def ibs_figure(summary: pd.DataFrame, task: str = "survival", title: str = "IBS vs Kaplan–Meier") -> Figure:
    """Dot plot from ``summary.csv`` rows (task, model, metric, mean, std): lower is better."""
    s = summary[summary["task"] == task]
    km = s[s["metric"] == "ibs_km"]["mean"].dropna()
    models = [m for m in dict.fromkeys(s["model"])
              if s[(s["model"] == m) & s["metric"].isin(["ibs", "ibs_recal"])]["mean"].notna().any()]
    if not models or km.empty:
        return message_figure(title, "no IBS values (no survival curves, or no Kaplan–Meier null)")
    fig = new_figure(6.4, max(2.0, 0.6 + 0.4 * len(models)))
    ax = fig.add_subplot()
    y = np.arange(len(models))[::-1]
    for off, (metric, label, colour) in zip((0.12, -0.12), IBS_VARIANTS, strict=True):
        rows = s[s["metric"] == metric].set_index("model").reindex(models)
        ax.errorbar(rows["mean"], y + off, xerr=rows["std"].fillna(0), fmt="o", color=colour,
                    capsize=2, label=label)
    ax.axvline(float(km.mean()), color="#555555", linestyle="--", linewidth=1,
               label=f"Kaplan–Meier null ({km.mean():.3f})")
    ax.set_yticks(y, models, fontsize=8)
    ax.set_xlabel("integrated Brier score (mean ± std over folds; lower is better)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def mean_curves(runs: Sequence[FoldRun], tables: CohortTables, n_times: int = 50) -> pd.DataFrame | str:
    """Pooled test patients: mean own / recalibrated S(t) and the KM (time, own, recalibrated,
    km, km_low, km_high); a string says why there is nothing to show."""
    folds, times, events = [], [], []
    for run in runs:
        pred = run.predictions
        if pred is None or pred.empty:
            continue
        times.append(pred["time"].to_numpy(float))
        events.append(pred["event"].to_numpy(float))
        folds.append((pred, run))
    if not times:
        return "no fold has test predictions"
    t_all, e_all = np.concatenate(times), np.concatenate(events)
    grid = np.linspace(0.0, float(np.quantile(t_all, 0.9)), n_times)
    s_own, s_recal = [], []
    for pred, run in folds:
        cols = survival_columns(pred)
        if cols and run.bin_edges is not None:
            curve = SurvivalCurve.from_survival_columns(pred[cols].to_numpy(float), run.bin_edges)
            s_own.append(curve(grid))
        inner = run.inner_predictions()
        v = inner[inner["role"] == "val"] if inner is not None and "role" in inner.columns else None
        # the same rule as the ibs_recal metric: fewer than 2 validation patients, no recalibration
        # (that fold's recalibrated curve is undefined, so the mean recalibrated curve is too)
        if v is not None and len(v) >= 2:
            tr_t, tr_e = tables.train_outcomes(run.fold)
            fit = fit_recalibration(v["risk"], v["time"], v["event"], marginal=(
                np.concatenate([tr_t, v["time"]]), np.concatenate([tr_e, v["event"]])))
            s_recal.append(fit.survival(pred["risk"].to_numpy(float), grid))
    km = kaplan_meier(t_all, e_all)
    idx = np.searchsorted(km.time, grid, side="right") - 1

    def at(values: np.ndarray) -> np.ndarray:
        return np.where(idx < 0, 1.0, values[np.clip(idx, 0, None)])

    n = len(t_all)
    return pd.DataFrame({
        "time": grid,
        "own": np.vstack(s_own).mean(axis=0) if len(s_own) == len(folds) else np.nan,
        "recalibrated": np.vstack(s_recal).mean(axis=0) if len(s_recal) == len(folds) else np.nan,
        "km": at(km.survival), "km_low": at(km.ci_low), "km_high": at(km.ci_high),
    }).assign(n_patients=n)


def mean_curve_figure(curves: pd.DataFrame | str, title: str, time_unit: str = "") -> Figure:
    """Mean predicted S(t) (own, recalibrated) against the pooled test Kaplan–Meier band."""
    if isinstance(curves, str):
        return message_figure(title, curves)
    fig = new_figure(4.8, 3.6)
    ax = fig.add_subplot()
    ax.fill_between(curves["time"], curves["km_low"], curves["km_high"], step="post",
                    color="#cccccc", label="test Kaplan–Meier (95 % CI)")
    ax.step(curves["time"], curves["km"], where="post", color="#555555", linewidth=1)
    for col, label, colour in (("own", "mean own curve", "#d62728"),
                               ("recalibrated", "mean recalibrated curve", "#2c7bb6")):
        if curves[col].notna().all():
            ax.plot(curves["time"], curves[col], color=colour, label=label)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"time{f' ({time_unit})' if time_unit else ''}")
    ax.set_ylabel("S(t)")
    ax.set_title(f"{title}: n={int(curves['n_patients'].iat[0])}", fontsize=10)
    ax.legend(fontsize=7, frameon=False, loc="lower left")
    return fig
