"""The page of an external test cohort: the source's slide-only models scored on its slides.

One table per task: each model's score per fold model, the mean ± std over the fold models, and
the ensemble (mean risk / mean class probabilities of the fold models), so a reader sees both
the spread over training sets and what deploying all folds together gives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from duopath.report.html_parts import esc, fmt, table


def external_table(runs: Sequence[dict]) -> pd.DataFrame:
    """Long table of metrics dicts (:func:`external_predictions`): task, model, member
    (fold<k> | ensemble), metric, value (NaN where undefined)."""
    rows = []
    for m in runs:
        for member, sc in m["scores"].items():
            for metric, value in sc.items():
                if metric in ("n", "n_events", "undefined"):
                    continue
                rows.append((m["task"], m["model"], member, metric,
                             np.nan if value is None else float(value)))
    return pd.DataFrame(rows, columns=["task", "model", "member", "metric", "value"])


_PRIMARY = {"survival": ["c_harrell", "c_uno", "ibs"], "classification": ["auc", "balanced_accuracy"]}


def _cell(value: float) -> str:
    return "n/a" if value is None or not math.isfinite(value) else fmt(float(value), 3)


def external_section(source: str, tab: pd.DataFrame, runs: Sequence[dict]) -> str:
    """The external-validation section (one table per task)."""
    parts = [f"<p>Models trained on <b>{esc(source)}</b> (each outer fold's model, unchanged), applied "
             "to this cohort's slides without RNA. <i>Ensemble</i>: the mean of the fold models' risks "
             "(survival) or class probabilities (classification). Fold models are scored with the "
             "source fold's training outcomes for Uno's C / IBS; the ensemble with Harrell's C.</p>"]
    for task in sorted(set(tab["task"])):
        t = tab[tab["task"] == task]
        metrics = [m for m in _PRIMARY.get(task, []) if m in set(t["metric"])]
        rows = []
        for model in dict.fromkeys(t["model"]):
            g = t[t["model"] == model]
            run = next(r for r in runs if r["model"] == model and r["task"] == task)
            for metric in metrics:
                folds = g[(g["metric"] == metric) & (g["member"] != "ensemble")]["value"].to_numpy(float)
                ens = g[(g["metric"] == metric) & (g["member"] == "ensemble")]["value"]
                ok = folds[np.isfinite(folds)]
                mean = f"{fmt(float(ok.mean()), 3)} ± {fmt(float(ok.std(ddof=1)), 3)}" if ok.size > 1 else (
                    _cell(float(ok[0])) if ok.size else "n/a")
                rows.append((esc(model), esc(metric), " ".join(_cell(v) for v in folds), mean,
                             _cell(float(ens.iloc[0])) if len(ens) else "n/a",
                             str(run["n_patients"]), str(len(run["excluded"]))))
        parts.append(f"<h3>{esc(task)}</h3>" + table(
            ["model", "metric", "per fold model", "mean ± std (fold models)", "ensemble",
             "patients", "left out"], rows, left=2))
    return f'<section id="external"><h2>External validation</h2>{"".join(parts)}</section>'


def external_page(cohort: str, source: str, tab: pd.DataFrame, runs: Sequence[dict]) -> str:
    """A self-contained HTML page for the external cohort."""
    return ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>duopath external validation: {esc(cohort)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}.l{text-align:left}</style>"
            f"</head><body><h1>{esc(cohort)}: external test cohort of {esc(source)}</h1>"
            + external_section(source, tab, runs) + "</body></html>")
