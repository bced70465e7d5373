"""One self-contained HTML page per cohort: summary, protocol, comparison tables, plots, heatmaps.

Self-contained means the file is the whole report: every picture is a ``data:image/png;base64``
URI, the style sheet is inline, and there is no script, web font, CDN or link to another file,
so it can be mailed, archived next to a paper, or opened on an air-gapped hospital machine.

Honesty rules the tables follow: a metric that could not be computed is shown as "n/a" with its
reason (a tooltip and a numbered note under the table), never as 0 and never left out; a mean
over fewer folds than the protocol has says so; the best mean of each metric is bold; paired
tests carry the caveat that fold metrics are not independent.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import pandas as pd

import duopath
from duopath.evaluation.cohort_tables import CohortTables
from duopath.evaluation.collect import (
    LOWER_IS_BETTER,
    MODEL_FREE_METRICS,
    PRIMARY_METRIC,
    TASK_METRICS,
    FoldRun,
    pooled_predictions,
)
from duopath.evaluation.compare import format_mean_std
from duopath.evaluation.exclusions import evaluated_counts, exclusions
from duopath.evaluation.metrics import (
    pooled_classification_metric,
    pooled_harrell_c,
)
from duopath.report.benchmarks import benchmarks_html
from duopath.report.html_calibration import calibration_section
from duopath.report.html_figures import heatmap_section, plots_section, unit_of
from duopath.report.html_parts import (
    ABLATION_HELP,
    CEILING_LABEL,
    CSS,
    TASK_TITLES,
    Notes,
    ceiling_row,
    esc,
    fmt,
    fmt_p,
    metric_label,
    table,
)
from duopath.report.model_patients import model_patients_table
from duopath.report.paired import paired_section

log = logging.getLogger(__name__)


@dataclass
class ReportInputs:
    """Everything the page is built from (the CLI reads it from the evaluate step's outputs)."""

    cohort: str
    tables: CohortTables
    metrics: pd.DataFrame  # collect.METRICS_COLUMNS
    summary: pd.DataFrame  # collect.SUMMARY_COLUMNS
    comparisons: pd.DataFrame  # collect.COMPARISON_COLUMNS
    runs: dict[str, dict[str, list[FoldRun]]]  # task -> model -> folds, report order
    splits_info: Mapping[str, Any] = field(default_factory=dict)
    wsi_summary: pd.DataFrame | None = None
    config_hash: str = ""
    landmark: float | None = None
    time_unit: str = ""
    max_heatmaps: int = 12  # per model and task, spread over the folds
    skipped: Mapping[str, str] = field(default_factory=dict)  # configured model -> why not run
    benchmarks: pd.DataFrame | None = None  # duopath.report.benchmarks.read_benchmarks
    ceiling: pd.DataFrame | None = None  # reference.csv: the planted truth's score (demo cohorts)
    generated: _dt.datetime = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc))

    @property
    def models(self) -> list[str]:
        seen: dict[str, None] = {}
        for by_model in self.runs.values():
            seen.update(dict.fromkeys(by_model))
        return list(seen)

    @property
    def reference(self) -> str:
        return self.models[0]


def task_metrics(metrics: pd.DataFrame, task: str) -> list[str]:
    """The task's metrics in protocol order, then any other metric the table holds."""
    present = list(dict.fromkeys(metrics.loc[metrics["task"] == task, "metric"]))
    known = [m for m in TASK_METRICS.get(task, ()) if m in present]
    return known + [m for m in present if m not in known]


# --------------------------------------------------------------------------- sections


def cohort_section(inp: ReportInputs) -> str:
    """Patients, slides, sites, events, class balance, and which slides failed."""
    p, sheet = inp.tables.patients, inp.tables.sheet
    rows = [("patients", str(len(p))), ("slides (sample sheet)", str(len(sheet)))]
    sites = p["site"].replace("", np.nan).dropna()
    if not sites.empty:
        counts = sites.value_counts().sort_index()
        rows.append(("sites", f"{counts.size}: " + ", ".join(f"{esc(s)} ({n})" for s, n in counts.items())))
    surv = p.dropna(subset=["time", "event"])
    if not surv.empty:
        rows.append(("patients with follow-up", str(len(surv))))
        rows.append(("events (observed)", f"{int(surv['event'].sum())} ({surv['event'].mean():.0%})"))
        rows.append(("median follow-up time", f"{fmt(float(surv['time'].median()), 2)} {esc(unit_of(inp))}"))
    labels = p["label"][p["label"] != ""]
    if not labels.empty:
        counts = labels.value_counts().sort_index()
        rows.append(
            ("class balance", ", ".join(f"{esc(c)}: {n} ({n / len(labels):.0%})" for c, n in counts.items()))
        )
    out = [table(["", "value"], [(esc(k), v) for k, v in rows], left=2)]
    out.append(wsi_block(inp))
    return section("cohort", "Cohort", "".join(out))


def wsi_block(inp: ReportInputs) -> str:
    wsi = inp.wsi_summary
    if wsi is None:
        return '<p class="muted">No WSI summary for this cohort (no slides were processed).</p>'
    status = wsi["status"].astype(str)
    bad = wsi[status != "ok"]
    tile_cols = [c for c in wsi.columns if str(c).startswith("tiles_")]
    parts = [
        f"<h3>Slides</h3><p>{len(wsi)} slides processed: {int((status == 'ok').sum())} ok, "
        f"<b>{len(bad)} failed or without tissue</b>"
        + (
            ", tiles per slide: "
            + ", ".join(
                f"{esc(c[len('tiles_') :])} median {int(wsi.loc[status == 'ok', c].median())}"
                for c in tile_cols
            )
            if tile_cols and (status == "ok").any()
            else ""
        )
        + ".</p>"
    ]
    cov_cols = [c for c in wsi.columns if str(c).startswith("coverage_")]
    if cov_cols and (status == "ok").any():
        finest = cov_cols[-1]
        cov = wsi.loc[status == "ok", finest].astype(float)
        worst = wsi.loc[cov.idxmin(), "slide_id"]
        parts.append(f"<p>Tissue area under a {esc(finest[len('coverage_'):])} tile (coverage): median "
                     f"{cov.median():.0%}, lowest {cov.min():.0%} ({esc(worst)}); the tiling QC picture of "
                     "each slide shows what was left out.</p>")
    if not bad.empty:
        by_slide = inp.tables.sheet.set_index("slide_id")["patient_id"].to_dict()
        rows = [
            (
                esc(r["slide_id"]),
                esc(by_slide.get(r["slide_id"], "?")),
                esc(r["status"]),
                esc("" if pd.isna(r.get("error")) else r.get("error")),
            )
            for _, r in bad.iterrows()
        ]
        parts.append(table(["slide", "patient", "status", "error"], rows, left=4))
        ok_slides = set(wsi.loc[status == "ok", "slide_id"])
        sheet = inp.tables.sheet
        lost = sorted(pid for pid, g in sheet.groupby("patient_id") if not set(g["slide_id"]) & ok_slides)
        if lost:
            parts.append(f"<p>Patients left without any usable slide: {esc(', '.join(lost))}.</p>")
    return "".join(parts)


def protocol_section(inp: ReportInputs) -> str:
    """Folds, site-disjointness (claimed and checked), seeds, encoder, per-fold sizes."""
    t = inp.tables
    info = inp.splits_info
    facts = [("outer folds", str(len(t.folds)))]
    if info:
        sd = "yes" if info.get("site_disjoint") else "no"
        facts.append(("site-disjoint test folds", f"{sd} ({esc(info.get('reason', ''))})"))
        facts.append(("split seed", esc(info.get("seed", "?"))))
        if info.get("strata"):
            facts.append(("folds stratified by", esc(info["strata"])))
    overlaps = _site_overlaps(t)
    facts.append(
        (
            "checked: test sites absent from the fold's training/validation patients",
            "yes, every fold"
            if not overlaps
            else "no: " + esc("; ".join(f"fold {k}: {', '.join(s)}" for k, s in overlaps.items())),
        )
    )
    infos = [r.info for by_model in inp.runs.values() for runs in by_model.values() for r in runs if r.info]
    for key, label in (
        ("seed", "training seeds"),
        ("encoder", "tile encoder"),
        ("selection", "model selection (validation split)"),
    ):
        values = sorted({str(i[key]) for i in infos if i.get(key) is not None})
        if values:
            facts.append((label, esc(", ".join(values))))
    mags = sorted({"+".join(i["magnifications"]) for i in infos if i.get("magnifications")})
    if mags:
        facts.append(("magnifications", esc(", ".join(mags))))
    facts.append(("models", esc(", ".join(inp.models))))
    if inp.skipped:
        facts.append(("models not run (what the data allows)",
                      esc("; ".join(f"{m}: {why}" for m, why in inp.skipped.items()))))
    out = [table(["", "value"], [(esc(k), v) for k, v in facts], left=2)]

    rows = []
    for k in t.folds:
        n = {r: len(t.role(k, r)) for r in ("train", "val", "test")}
        test = t.patients.loc[t.role(k, "test")]
        ev = test.dropna(subset=["event"])
        labels = test["label"][test["label"] != ""].value_counts().sort_index()
        rows.append(
            (
                str(k),
                str(n["train"]),
                str(n["val"]),
                str(n["test"]),
                f"{int(ev['event'].sum())}" if not ev.empty else "–",
                esc(", ".join(f"{c}: {m}" for c, m in labels.items())) or "–",
                esc(", ".join(sorted(set(test["site"]) - {""}))) or "–",
            )
        )
    out.append(table(["fold", "train", "val", "test (split)", "test events", "test classes", "test sites"],
                     rows))
    out.append(evaluated_block(inp))
    out.append(
        "<p class=muted>Every number below is computed on the held-out test patients of each fold; "
        "Uno's C, td-AUC and IBS weight them by the censoring distribution of the fold's training "
        "patients (the split table's, the same for every model); Uno's C is truncated at the 75th "
        "percentile of the training times. Model selection and early stopping used the validation "
        "patients only. Kaplan–Meier risk groups: each fold's test patients are split at the median "
        "risk of that fold's training patients, then pooled.</p>"
    )
    return section("protocol", "Protocol", "".join(out))


def evaluated_block(inp: ReportInputs) -> str:
    """Per task and model: patients evaluated of the split's test patients, and every excluded one
    with the reason (``evaluation.exclusions``): the metrics rest on these patients only."""
    parts = []
    for task, runs in inp.runs.items():
        counts = evaluated_counts(runs, inp.tables)
        ex = exclusions(runs, inp.tables, task, inp.wsi_summary)
        rows = []
        for model, (n_pred, n_test) in counts.items():
            mine = ex[ex["model"] == model]
            by_reason: dict[str, list[str]] = {}
            for r in mine.itertuples():
                by_reason.setdefault(r.reason, []).append(f"{r.patient_id} (fold {r.fold})")
            why = "; ".join(f"{', '.join(p)}: {reason}" for reason, p in by_reason.items()) or "none"
            rows.append((esc(model), esc(why), f"{n_pred} of {n_test}"))
        title = TASK_TITLES.get(task, task).lower()
        parts.append(f"<h3>Patients evaluated ({esc(title)})</h3>"
                     + table(["model", "test patients left out, and why", "test patients evaluated"], rows,
                             left=2))
    return "".join(parts)


def _site_overlaps(t: CohortTables) -> dict[int, list[str]]:
    out = {}
    for k in t.folds:
        test = set(t.patients.loc[t.role(k, "test"), "site"]) - {""}
        rest = set(t.patients.loc[t.role(k, "train") + t.role(k, "val"), "site"]) - {""}
        if test & rest:
            out[k] = sorted(test & rest)
    return out


def comparison_table(inp: ReportInputs, task: str, models: Sequence[str]) -> str:
    """Mean ± std over folds per model and metric; best mean bold; n/a and partial folds noted."""
    summ = inp.summary[inp.summary["task"] == task].set_index(["model", "metric"])
    long = inp.metrics[inp.metrics["task"] == task]
    metrics = task_metrics(inp.metrics, task)
    notes = Notes()
    best = {m: _best_models(summ, models, m) for m in metrics}
    primary = PRIMARY_METRIC.get(task)
    rows = []
    for model in models:
        cells = [esc(model)]
        for metric in metrics:
            cells.append(_summary_cell(summ, long, model, metric, model in best[metric], notes))
        if primary:
            cells.append(_pooled_cell(inp.runs[task].get(model, []), task, primary, notes))
        rows.append(cells)
    truth = ceiling_row(inp.ceiling, task, metrics, extra=1 if primary else 0)
    if truth:
        rows.append(truth)
    header = ["model", *[metric_label(m) for m in metrics]]
    if primary:
        header.append(f"pooled {metric_label(primary)}")
    n_folds = len(inp.tables.folds)
    ceiling_note = (
        f"<p class=muted><i>{esc(CEILING_LABEL)}</i>: the synthetic cohort's own true risk (survival: "
        "the linear predictor of the hazard; classification: the true probability of the high grade) "
        f"scored on the same test patients as {esc(inp.reference)}, fold by fold: how high a perfect "
        "model could reach on these very folds.</p>" if truth else ""
    )
    return (
        table(header, rows)
        + notes.render()
        + ceiling_note
        + f"<p class=muted>Each cell is the <b>fold-mean ± standard deviation</b> of the metric computed "
        f"on each of the {n_folds} folds' test patients separately; the last column is the same "
        f"primary metric computed once on the <b>pooled</b> test predictions of all folds. With few "
        f"test patients per fold the two can differ: a small fold ranked perfectly scores 1.000, "
        f"while the pooled ranking also compares patients across folds, whose models differ.</p>"
    )


def _pooled_cell(runs: Sequence[FoldRun], task: str, metric: str, notes: Notes) -> str:
    """The primary metric on the pooled out-of-fold predictions, or n/a with the reason."""
    pooled = pooled_predictions(runs)
    if pooled.empty:
        return notes.na("no test predictions")
    try:
        res = pooled_harrell_c(pooled) if task == "survival" else pooled_classification_metric(metric)(pooled)
    except (ValueError, KeyError) as err:
        return notes.na(str(err))
    return fmt(res.value) if res.ok else notes.na(res.reason or "undefined")


def _best_models(summ: pd.DataFrame, models: Sequence[str], metric: str) -> set[str]:
    """The models to print in bold for ``metric``: none for a model-free reference such as the
    Kaplan–Meier null's IBS (its small differences between models are test sets, not models)."""
    if metric in MODEL_FREE_METRICS:
        return set()
    means = {m: float(summ.loc[(m, metric), "mean"]) for m in models if (m, metric) in summ.index}
    finite = {m: v for m, v in means.items() if math.isfinite(v)}
    if not finite:
        return set()
    target = min(finite.values()) if metric in LOWER_IS_BETTER else max(finite.values())
    return {m for m, v in finite.items() if math.isclose(v, target, rel_tol=0, abs_tol=1e-12)}


def fold_reasons(long: pd.DataFrame, model: str, metric: str) -> str:
    """The undefined folds of one model and metric, identical reasons merged ('folds 0, 2: why')."""
    g = long[(long["model"] == model) & (long["metric"] == metric) & long["value"].isna()]
    by_reason: dict[str, list[int]] = {}
    for fold, reason in zip(g["fold"], g["reason"], strict=True):
        by_reason.setdefault(str(reason), []).append(int(fold))
    return "; ".join(
        f"fold{'s' if len(folds) > 1 else ''} {', '.join(map(str, sorted(folds)))}: {reason}"
        for reason, folds in by_reason.items()
    )


def _summary_cell(
    summ: pd.DataFrame, long: pd.DataFrame, model: str, metric: str, bold: bool, notes: Notes
) -> str:
    """'mean ± std' (bold when best), 'n/a' with the reasons, or a partial-folds marker."""
    if (model, metric) not in summ.index:
        return notes.na(f"{metric} was not computed for {model}")
    row = summ.loc[(model, metric)]
    n_def, n_folds = int(row["n_defined"]), int(row["n_folds"])
    reasons = fold_reasons(long, model, metric) or str(row["reasons"])
    if n_def == 0:
        return notes.na(reasons)
    text = esc(format_mean_std(float(row["mean"]), float(row["std"])))
    if bold:
        text = f"<b>{text}</b>"
    if n_def < n_folds:
        text += (
            f' <span class="partial" title="{esc(reasons)}">({n_def}/{n_folds} folds)</span>'
            + notes.mark(reasons)
        )
    return text


def ablation_table(inp: ReportInputs, task: str) -> str:
    """The main model and its ``<main>_*`` variants: mean ± std and the paired difference to main."""
    main = inp.reference
    ablations = [m for m in inp.runs[task] if m.startswith(main + "_")]
    if not ablations:
        return ""
    summ = inp.summary[inp.summary["task"] == task].set_index(["model", "metric"])
    long = inp.metrics[inp.metrics["task"] == task]
    comp = inp.comparisons
    comp = comp[(comp["task"] == task) & (comp["test"] == "wilcoxon")].set_index(["model", "metric"])
    metrics = task_metrics(inp.metrics, task)
    notes = Notes()
    best = {m: _best_models(summ, [main, *ablations], m) for m in metrics}
    rows = []
    for model in [main, *ablations]:
        suffix = model[len(main) + 1 :] if model != main else ""
        cells = [esc(model), esc(ABLATION_HELP.get(suffix, "full model" if model == main else ""))]
        for metric in metrics:
            cell = _summary_cell(summ, long, model, metric, model in best[metric], notes)
            if model != main and (model, metric) in comp.index:
                c = comp.loc[(model, metric)]
                if math.isfinite(float(c["difference"])):
                    p = (
                        fmt_p(float(c["p_value"]))
                        if math.isfinite(float(c["p_value"]))
                        else notes.na(str(c["reason"]))
                    )
                    cell += f"<br><small>Δ {float(c['difference']):+.3f}, Wilcoxon p {p}</small>"
            cells.append(cell)
        rows.append(cells)
    return (
        "<h3>Ablations</h3>"
        + table(["model", "what changes", *[metric_label(m) for m in metrics]], rows, left=2)
        + notes.render()
    )


def per_fold_table(inp: ReportInputs, task: str, models: Sequence[str]) -> str:
    long = inp.metrics[inp.metrics["task"] == task]
    metrics = task_metrics(inp.metrics, task)
    cell = long.set_index(["model", "fold", "metric"])
    notes = Notes()
    rows = []
    for model in models:
        for fold in sorted(long.loc[long["model"] == model, "fold"].unique()):
            cells = [esc(model), str(int(fold))]
            for metric in metrics:
                key = (model, fold, metric)
                if key not in cell.index:
                    cells.append(notes.na(f"{metric} not computed"))
                    continue
                r = cell.loc[key]
                v = float(r["value"])
                cells.append(fmt(v) if math.isfinite(v) else notes.na(str(r["reason"])))
            rows.append(cells)
    return (
        f"<h3>Per fold</h3>{table(['model', 'fold', *[metric_label(m) for m in metrics]], rows, left=2)}"
        + notes.render()
    )


def task_section(inp: ReportInputs, task: str) -> str:
    models = list(inp.runs[task])
    parts = [
        f"<p>Models: {esc(', '.join(models))}; reference for comparisons: <b>{esc(inp.reference)}</b>. "
        "Mean ± standard deviation over the outer folds; best mean in <b>bold</b>; hover "
        "an n/a for its reason.</p>",
        comparison_table(inp, task, models),
        model_patients_table(inp, task),
        plots_section(inp, task),
        calibration_section(inp, task),
        ablation_table(inp, task),
        paired_section(inp, task),
        heatmap_section(inp, task),
        per_fold_table(inp, task, models),
    ]
    return section(task, TASK_TITLES.get(task, task), "".join(parts))


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{body}</section>'


def _versions() -> str:
    out = []
    for dist in ("numpy", "pandas", "scikit-survival", "lifelines", "scikit-learn", "matplotlib"):
        try:
            out.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            continue
    return ", ".join(out)


def footer(inp: ReportInputs) -> str:
    return (
        f"<footer><p>duopath {esc(duopath.__version__)} · config hash "
        f"<code>{esc(inp.config_hash or 'not recorded')}</code> · generated "
        f"{esc(inp.generated.strftime('%Y-%m-%d %H:%M UTC'))} · Python {esc(platform.python_version())}"
        f" · {esc(_versions())}</p></footer>"
    )


def build_report(inp: ReportInputs) -> str:
    """The whole page as a string (UTF-8, self-contained)."""
    if not inp.runs:
        raise ValueError("no task results to report")
    tasks = list(inp.runs)
    nav = "".join(
        f'<a href="#{esc(a)}">{esc(t)}</a>'
        for a, t in [
            ("cohort", "Cohort"),
            ("protocol", "Protocol"),
            *[(t, TASK_TITLES.get(t, t)) for t in tasks],
            *([("resources", "Resources")] if inp.benchmarks is not None else []),
        ]
    )
    body = [
        f"<h1>duopath report — {esc(inp.cohort)}</h1>",
        f"<nav>{nav}</nav>",
        cohort_section(inp),
        protocol_section(inp),
        *[task_section(inp, t) for t in tasks],
        *([section("resources", "Resources", benchmarks_html(inp.benchmarks))]
          if inp.benchmarks is not None else []),
        footer(inp),
    ]
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width, initial-scale=1'>"
        f"<title>duopath report — {esc(inp.cohort)}</title><style>{CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
