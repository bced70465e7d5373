"""``duopath evaluate``, ``heatmaps`` and ``report``: the steps the report rules run.

Why two steps: ``metrics.csv`` / ``summary.csv`` / ``comparisons.csv`` are what users analyse
further and what the report shows, so they are a DAG output of their own; the report only
draws them (and re-reads the predictions for the plots), which makes a layout change cheap.
Heavy imports (pandas, scikit-survival, lifelines, matplotlib, torch) happen inside the
functions so ``duopath --help`` stays instant.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from duopath.cli.options import ResultsDir, Sheet, Splits, Threads, fail

log = logging.getLogger(__name__)


def evaluate(
    results_dir: ResultsDir,
    sheet: Sheet,
    splits: Splits,
    metrics_out: Annotated[Path, typer.Option("--metrics-out", help="results/{cohort}/metrics.csv")],
    summary_out: Annotated[Path, typer.Option("--summary-out", help="results/{cohort}/summary.csv")],
    comparisons_out: Annotated[
        Path, typer.Option("--comparisons-out", help="results/{cohort}/comparisons.csv")
    ],
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            help="a model to evaluate (repeat); the first is the main model every other is "
            "compared with; default: every model directory found, sorted",
        ),
    ] = None,
    task: Annotated[
        list[str] | None,
        typer.Option(
            "--task", help="survival | classification (repeat); default: the task directories found"
        ),
    ] = None,
    n_boot: Annotated[
        int, typer.Option("--n-boot", min=1, help="bootstrap replicates of the pooled difference")
    ] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="bootstrap seed")] = 0,
    truth: Annotated[
        Path | None, typer.Option("--truth", help="a demo cohort's truth.csv: score the planted truth "
                                  "on the main model's test patients (needs --reference-out)")
    ] = None,
    reference_out: Annotated[
        Path | None, typer.Option("--reference-out", help="results/{cohort}/reference.csv: the truth's rows "
                                  "with --truth, else an empty table (the cohort has no planted truth)")
    ] = None,
) -> None:
    """Score every model's held-out predictions: metrics.csv, summary.csv, comparisons.csv (and,
    for a demo cohort, reference.csv: the planted truth's own score, the ceiling)."""
    import pandas as pd

    from duopath.evaluation.cohort_tables import load_cohort_tables
    from duopath.evaluation.collect import evaluate_cohort, write_evaluation
    from duopath.evaluation.reference import REFERENCE_COLUMNS, scored_patients, truth_reference_from_files
    from duopath.io import write_table

    if truth is not None and reference_out is None:
        raise typer.BadParameter("--truth needs --reference-out (where the truth's scores go)")
    try:
        tables = load_cohort_tables(sheet, splits)
        ev = evaluate_cohort(results_dir, tables, model, task, n_boot=n_boot, seed=seed)
        ceiling = pd.DataFrame(columns=list(REFERENCE_COLUMNS))
        if truth is not None:
            ceiling = truth_reference_from_files(truth, splits, list(ev.runs),
                                                 scored=scored_patients(ev.runs, ev.reference))
    except ValueError as err:
        fail(err)
    write_evaluation(ev, metrics_out, summary_out, comparisons_out)
    if reference_out is not None:
        write_table(reference_out, ceiling)
        if truth is not None:
            log.info("planted truth on %s's test patients -> %s", ev.reference, reference_out)
    n_nan = int(ev.metrics["value"].isna().sum())
    log.info(
        "%d models x %d folds x %d tasks -> %s (%d undefined values, each with its reason)",
        len(ev.models),
        len(tables.folds),
        len(ev.runs),
        metrics_out,
        n_nan,
    )


def report(
    results_dir: ResultsDir,
    sheet: Sheet,
    splits: Splits,
    metrics: Annotated[Path, typer.Option("--metrics", help="metrics.csv of `duopath evaluate`")],
    summary: Annotated[Path, typer.Option("--summary", help="summary.csv of `duopath evaluate`")],
    comparisons: Annotated[Path, typer.Option("--comparisons", help="comparisons.csv of `duopath evaluate`")],
    out: Annotated[Path, typer.Option("--out", help="results/{cohort}/report.html")],
    splits_info: Annotated[Path | None, typer.Option("--splits-info", help="splits/{cohort}.json")] = None,
    wsi_summary: Annotated[
        Path | None,
        typer.Option("--wsi-summary", help="qc/{cohort}/wsi_summary.csv (omit for a cohort without slides)"),
    ] = None,
    cohort: Annotated[str, typer.Option("--cohort", help="cohort name (default: the results folder's)")] = "",
    config_hash: Annotated[
        str, typer.Option("--config-hash", help="hash of the run's config (provenance)")
    ] = "",
    landmark: Annotated[
        float | None,
        typer.Option("--landmark", help="time of the survival calibration plot (default: median event time)"),
    ] = None,
    time_unit: Annotated[
        str, typer.Option("--time-unit", help="unit of the sheet's times, for axis labels")
    ] = "",
    max_heatmaps: Annotated[
        int, typer.Option("--max-heatmaps", min=0, help="heatmaps shown per model and task")
    ] = 12,
    skipped: Annotated[
        list[str] | None,
        typer.Option("--skipped", help="'model=reason' for a configured model the data does not allow "
                     "(repeatable; shown in the protocol section)"),
    ] = None,
    benchmarks_dir: Annotated[
        Path | None, typer.Option("--benchmarks-dir", help="benchmarks/{cohort}: the jobs' benchmark TSVs "
                                  "(summarised in a resources section)")
    ] = None,
    figures_dir: Annotated[
        Path | None, typer.Option("--figures-dir", help="also write the page's figures here as PNG files")
    ] = None,
    reference: Annotated[
        Path | None, typer.Option("--reference", help="reference.csv of `duopath evaluate --truth` (demo "
                                  "cohorts): the planted truth's row in the model tables")
    ] = None,
) -> None:
    """Write the cohort's self-contained HTML report (models and their order from metrics.csv)."""
    import pandas as pd

    from duopath.evaluation.cohort_tables import load_cohort_tables
    from duopath.evaluation.collect import (
        COMPARISON_COLUMNS,
        METRICS_COLUMNS,
        SUMMARY_COLUMNS,
        load_runs,
        read_table,
    )
    from duopath.evaluation.reference import REFERENCE_COLUMNS
    from duopath.io import atomic_path
    from duopath.report.benchmarks import read_benchmarks
    from duopath.report.figure_files import write_report_figures
    from duopath.report.html import ReportInputs, build_report

    try:
        tables = load_cohort_tables(sheet, splits)
        long = read_table(metrics, METRICS_COLUMNS)
        runs = {
            task: load_runs(results_dir, task, list(dict.fromkeys(g["model"])), tables.folds)
            for task, g in long.groupby("task", sort=False)
        }
        inputs = ReportInputs(
            cohort=cohort or Path(results_dir).name,
            tables=tables,
            metrics=long,
            summary=read_table(summary, SUMMARY_COLUMNS),
            comparisons=read_table(comparisons, COMPARISON_COLUMNS),
            runs=runs,
            splits_info=json.loads(Path(splits_info).read_text()) if splits_info else {},
            wsi_summary=pd.read_csv(wsi_summary, dtype={"slide_id": str}) if wsi_summary else None,
            config_hash=config_hash,
            landmark=landmark,
            time_unit=time_unit,
            max_heatmaps=max_heatmaps,
            skipped=_pairs(skipped or [], "--skipped"),
            benchmarks=read_benchmarks(benchmarks_dir) if benchmarks_dir is not None else None,
            ceiling=read_table(reference, REFERENCE_COLUMNS) if reference else None,
        )
        page = build_report(inputs)
    except ValueError as err:
        fail(err)
    with atomic_path(out) as tmp:  # UTF-8 whatever the locale (the page has ±, Δ, µ)
        tmp.write_text(page, encoding="utf-8")
    if figures_dir is not None:
        log.info("%d figures -> %s", len(write_report_figures(page, figures_dir)), figures_dir)
    log.info("report of %d models -> %s (%.1f MB)", len(inputs.models), out, len(page) / 1e6)


def heatmaps(
    checkpoint: Annotated[list[Path], typer.Option(
        "--checkpoint", help="results/{cohort}/{task}/{model}/fold{k}/checkpoint.safetensors (teacher or "
        "student); repeat for several folds")],
    predictions: Annotated[list[Path], typer.Option(
        "--predictions", help="the fold's predictions.parquet, once per --checkpoint, same order")],
    sheet: Sheet,
    features_dir: Annotated[Path, typer.Option("--features-dir", help="folder of the {slide}.zarr stores")],
    out: Annotated[list[Path], typer.Option(
        "--out", help="the fold's heatmaps folder to write (replaced as a whole), once per --checkpoint")],
    rna: Annotated[
        Path | None, typer.Option("--rna", help="rna/{cohort}.h5ad (needed for a teacher)")
    ] = None,
    patients: Annotated[int, typer.Option("--patients", min=0, help="test patients to paint")] = 3,
    magnification: Annotated[
        list[str] | None,
        typer.Option("--magnification", help="magnification to paint (repeat); default: the finest"),
    ] = None,
    all_magnifications: Annotated[
        bool, typer.Option("--all-magnifications", help="paint every magnification of the model")
    ] = False,
    thumb_mpp: Annotated[
        float | None, typer.Option("--thumb-mpp", help="µm/px of the thumbnails (default: long side "
                                   "1200 px, never finer than 1 µm/px)")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu | cuda | cuda:N | auto")] = "cpu",
    threads: Threads = 0,
) -> None:
    """Heatmaps (teacher T/E attention or student ω/clusters) of the chosen test patients of one
    or several folds (``--checkpoint C --predictions P --out DIR`` per fold: the rule passes all
    folds of a (cohort, task, model), so torch is imported once)."""
    from duopath.devices import resolve_device, set_threads
    from duopath.report.fold_heatmaps import HeatmapError, write_fold_heatmaps

    if not len(checkpoint) == len(predictions) == len(out):
        raise typer.BadParameter(f"{len(checkpoint)} --checkpoint, {len(predictions)} --predictions and "
                                 f"{len(out)} --out: give one of each per fold, in the same order")
    set_threads(threads)
    try:
        dev = str(resolve_device(device))
        for ckpt, pred, folder in zip(checkpoint, predictions, out, strict=True):
            write_fold_heatmaps(ckpt, pred, sheet, features_dir, folder, rna=rna, n_patients=patients,
                                magnifications="all" if all_magnifications else (magnification or None),
                                thumb_mpp=thumb_mpp, device=dev)
    except (HeatmapError, ValueError, OSError, RuntimeError) as err:
        fail(err)


def _pairs(values: list[str], option: str) -> dict[str, str]:
    """``['a=why', ...]`` → ``{'a': 'why'}``; a value without ``=`` is a usage error naming it."""
    out = {}
    for v in values:
        key, sep, why = v.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{option} {v!r}: expected 'model=reason'")
        out[key.strip()] = why.strip()
    return out


def contact_sheet(
    wsi_summary: Annotated[Path, typer.Option("--wsi-summary", help="qc/{cohort}/wsi_summary.csv")],
    images: Annotated[list[Path], typer.Option("--image", help="QC image per summary row (repeat)")],
    out: Annotated[Path, typer.Option("--out", help="contact sheet PNG")],
) -> None:
    """One thumbnail per slide with its status, tissue area and tiles (the Snakemake report's QC)."""
    from duopath.report.contact_sheet import write_contact_sheet

    try:
        write_contact_sheet(wsi_summary, images, out)
    except ValueError as err:
        fail(err)


def external_report(
    metrics: Annotated[list[Path], typer.Option("--metrics", help="results/{cohort}/external/{task}/"
                                                "{model}/metrics.json (repeat)")],
    cohort: Annotated[str, typer.Option("--cohort", help="the external cohort")],
    source: Annotated[str, typer.Option("--source", help="the cohort the models were trained on")],
    table_out: Annotated[Path, typer.Option("--table-out", help="results/{cohort}/external.csv")],
    out: Annotated[Path, typer.Option("--out", help="results/{cohort}/report.html")],
) -> None:
    """The external-validation table and page of an external test cohort."""
    from duopath.io import write_table, write_text
    from duopath.report.external import external_page, external_table

    runs = [json.loads(path.read_text()) for path in metrics]
    table = external_table(runs)
    write_table(table_out, table)
    write_text(out, external_page(cohort, source, table, runs))
