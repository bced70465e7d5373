"""The paired-comparison table of the report: every model against the main one, per metric.

Fold metrics are not independent (the training sets overlap), so each row carries the caveat
and the small-n limit of the tests next to the numbers.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import pandas as pd

from duopath.report.html_parts import (
    Notes,
    esc,
    fmt,
    fmt_p,
    metric_label,
    table,
)

if TYPE_CHECKING:  # ReportInputs lives in the page module, which imports this one
    from duopath.report.html import ReportInputs

log = logging.getLogger(__name__)


def paired_section(inp: ReportInputs, task: str) -> str:
    """Every model vs the main one: paired tests over folds, and the pooled bootstrap CI."""
    comp = inp.comparisons[inp.comparisons["task"] == task]
    if comp.empty:
        return ""
    ref = inp.reference
    notes = Notes()
    rows = []
    paired = comp[comp["test"].isin(["paired_t", "wilcoxon"])]
    for (model, metric), g in paired.groupby(["model", "metric"], sort=False):
        t_row = g[g["test"] == "paired_t"].iloc[0]
        w_row = g[g["test"] == "wilcoxon"].iloc[0]
        diff = float(t_row["difference"])
        rows.append(
            (
                esc(model),
                metric_label(metric),
                _num(t_row["value"], notes, t_row["reason"]),
                _num(t_row["reference_value"], notes, t_row["reason"]),
                f"{diff:+.3f}" if math.isfinite(diff) else notes.na(str(t_row["reason"])),
                str(int(t_row["n"])),
                _p(t_row, notes),
                _p(w_row, notes),
            )
        )
    out = [
        f"<h3>Paired comparisons with {esc(ref)}</h3>",
        table(
            [
                "model",
                "metric",
                "model mean",
                f"{esc(ref)} mean",
                "Δ (model − ref)",
                "folds",
                "paired t p",
                "Wilcoxon p",
            ],
            rows,
            left=2,
        ),
    ]
    n = int(paired["n"].max()) if not paired.empty else 0
    if n:
        out.append(
            f"<p class=muted>Means over the folds where both models are defined. With {n} folds "
            f"the fold metrics share training patients and are not independent, so both tests tend "
            f"to be anti-conservative; the smallest two-sided Wilcoxon p attainable with n={n} is "
            f"{2.0 / 2**n:.3g}. Read the p-values as descriptive, next to the bootstrap CI.</p>"
        )
    boot = comp[comp["test"] == "bootstrap"]
    if not boot.empty:
        brows = []
        for _, r in boot.iterrows():
            ci = (
                f"[{float(r['ci_low']):+.3f}, {float(r['ci_high']):+.3f}]"
                if math.isfinite(float(r["ci_low"]))
                else notes.na(str(r["reason"]))
            )
            brows.append(
                (
                    esc(r["model"]),
                    metric_label(r["metric"]),
                    _num(r["value"], notes, r["reason"]),
                    _num(r["reference_value"], notes, r["reason"]),
                    (
                        f"{float(r['difference']):+.3f}"
                        if math.isfinite(float(r["difference"]))
                        else notes.na(str(r["reason"]))
                    ),
                    ci,
                    str(int(r["n"])),
                    esc(r["reason"]) if r["reason"] and math.isfinite(float(r["difference"])) else "",
                )
            )
        out.append(
            "<p>Pooled out-of-fold predictions, patients resampled with replacement (the same "
            "resample for both models), 95 % percentile interval:</p>"
        )
        out.append(
            table(
                ["model", "pooled metric", "model", esc(ref), "Δ", "95 % CI", "patients", "note"],
                brows,
                left=2,
            )
        )
    out.append(notes.render())
    return "".join(out)


def _num(value: Any, notes: Notes, reason: object) -> str:
    v = float(value)  # a CSV cell: a number or NaN
    return fmt(v) if math.isfinite(v) else notes.na(str(reason))


def _p(row: pd.Series, notes: Notes) -> str:
    v = float(row["p_value"])
    return fmt_p(v) if math.isfinite(v) else notes.na(str(row["reason"]))
