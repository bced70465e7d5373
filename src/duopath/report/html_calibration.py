"""The report's "Survival calibration" block: IBS beside the Kaplan–Meier null, and mean curves.

Why a block of its own: a model can rank patients well (C-index) and still draw survival curves
worse than the training patients' Kaplan–Meier, which ignores every patient's data. A reader who
wants to show a patient a curve needs to see that comparison directly, model by model, on the
SAME folds: the table puts each model's IBS (its own curves, the same curves with a constant
hazard within bins, and its risk recalibrated on the inner validation patients) beside the null's
IBS on exactly the folds where the model's number is defined, and one sentence says which models
beat the null. The figures (``duopath.report.survival_calibration``) show the same numbers as a
dot plot and, for the main models, the average predicted curve against the test Kaplan–Meier.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

from duopath.evaluation.compare import format_mean_std
from duopath.report.html_figures import main_models, unit_of
from duopath.report.html_parts import Notes, esc, figure_html, table
from duopath.report.survival_calibration import ibs_figure, mean_curve_figure, mean_curves

if TYPE_CHECKING:  # ReportInputs lives in the page module, which imports this one
    from duopath.report.html import ReportInputs

#: The model's curves in the table, in column order: (metric, column title).
CURVE_COLUMNS = (
    ("ibs", "IBS, own curves"),
    ("ibs_interp", "IBS, own curves interpolated within bins"),
    ("ibs_recal", "IBS, risk recalibrated on validation"),
)
NULL_METRIC = "ibs_km"


def _fold_values(long: pd.DataFrame, model: str, metric: str) -> pd.Series:
    """fold -> value of one model and metric (NaN where undefined)."""
    g = long[(long["model"] == model) & (long["metric"] == metric)]
    return g.set_index("fold")["value"].astype(float)


def _vs_null(long: pd.DataFrame, model: str, metric: str) -> tuple[pd.Series, pd.Series]:
    """The model's defined folds of ``metric`` and the null's IBS on exactly those folds."""
    own = _fold_values(long, model, metric).dropna()
    null = _fold_values(long, model, NULL_METRIC).reindex(own.index)
    keep = null.notna()
    return own[keep], null[keep]


def _cell(values: pd.Series, notes: Notes, why: str) -> str:
    if values.empty:
        return notes.na(why)
    std = float(values.std(ddof=1)) if len(values) > 1 else math.nan
    return esc(format_mean_std(float(values.mean()), std))


def _beats(own: pd.Series, null: pd.Series) -> bool:
    return not own.empty and float(own.mean()) < float(null.mean())


def calibration_table(inp: ReportInputs, task: str, models: Sequence[str]) -> tuple[str, str]:
    """(the table, the plain-words sentence) of every model with a defined IBS of any kind."""
    long = inp.metrics[inp.metrics["task"] == task]
    notes = Notes()
    rows, winners = [], {metric: [] for metric, _ in CURVE_COLUMNS}
    for model in models:
        pairs = {metric: _vs_null(long, model, metric) for metric, _ in CURVE_COLUMNS}
        if all(own.empty for own, _ in pairs.values()):
            continue
        cells = [esc(model)]
        for metric, _ in CURVE_COLUMNS:
            own, null = pairs[metric]
            reasons = long[(long["model"] == model) & (long["metric"] == metric)]["reason"]
            text = _cell(own, notes, "; ".join(sorted(set(reasons) - {""})) or "undefined")
            if not own.empty:
                better = int((own < null).sum())
                text += f"<br><small>beats the null in {better} of {len(own)} folds</small>"
                if _beats(own, null):
                    text = f"<b>{text}</b>"
                    winners[metric].append(model)
            cells.append(text)
        # the null on the folds of the model's own curves (else of whichever IBS it has)
        own, null = next((pairs[m] for m, _ in CURVE_COLUMNS if not pairs[m][0].empty))
        cells.append(_cell(null, notes, "no Kaplan–Meier null"))
        rows.append(cells)
    if not rows:
        return "", ""
    header = ["model", *[f"{title} ↓" for _, title in CURVE_COLUMNS],
              "Kaplan–Meier null, same folds ↓"]
    words = []
    for metric, title in CURVE_COLUMNS:
        names = winners[metric]
        words.append(f"{title.split(', ', 1)[1]}: {esc(', '.join(names)) if names else 'none'}")
    sentence = ("<p><b>Which models' curves beat the Kaplan–Meier null</b> (a lower fold-mean IBS than "
                "the curve that gives every test patient the training patients' Kaplan–Meier, on the "
                "same folds) — " + "; ".join(words) + ".</p>")
    return table(header, rows) + notes.render(), sentence


def calibration_section(inp: ReportInputs, task: str) -> str:
    """The "Survival calibration" block of a survival task (empty for other tasks)."""
    if task != "survival":
        return ""
    models = list(inp.runs[task])
    body, sentence = calibration_table(inp, task, models)
    if not body:
        return ("<h3>Survival calibration</h3><p class=muted>No model of this task has an integrated "
                "Brier score (no survival curves and no validation predictions to recalibrate).</p>")
    figs = [figure_html(ibs_figure(inp.summary, task),
                        "Integrated Brier score per model (fold-mean ± std): own curves and the risk "
                        "recalibrated on the inner validation patients; dashed line: the Kaplan–Meier "
                        "null. Right of the line = worse than no information.",
                        "IBS against the Kaplan-Meier null")]
    unit = unit_of(inp)
    curves = [figure_html(mean_curve_figure(mean_curves(inp.runs[task][m], inp.tables), m, inp.time_unit),
                          f"{m}: mean predicted survival of the pooled test patients (own and "
                          f"recalibrated curves) against their Kaplan–Meier with 95 % CI; time in {unit}.",
                          f"mean survival curve {m}")
              for m in main_models(inp, task)]
    return (
        "<h3>Survival calibration</h3>" + sentence + body
        + "<p class=muted>IBS: the Brier score of the predicted survival probabilities averaged over "
        "the fold's time grid (lower is better), with the censoring weights of the fold's training "
        "patients. <i>Own curves</i> step at the end of each training-fit time bin; "
        "<i>interpolated</i> spreads each bin's hazard evenly over the bin; <i>recalibrated</i> is a "
        "one-covariate Cox model of the risk score whose slope is fit on the fold's inner validation "
        "patients (never the test fold) and whose baseline matches the training + validation "
        "Kaplan–Meier. Bold: better than the null on average.</p>"
        + "<div class=grid>" + "".join(figs + curves) + "</div>"
    )
