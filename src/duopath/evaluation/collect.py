"""A cohort's results tree -> the evaluation tables: model × fold × metric, summaries, comparisons.

Input tree (``duopath.layout``): ``results/{cohort}/{task}/{model}/fold{k}/`` with
``predictions.parquet`` (the fold's TEST patients), ``metrics.json`` (written last: its presence
means the fold completed; carries ``time_bins`` / ``class_names``), and optionally
``inner_predictions.parquet`` (train/val patients, for the risk-group threshold) and
``train_log.csv``.

Why the metrics are recomputed here from ``predictions.parquet`` rather than copied from each
fold's ``metrics.json``: teacher, ablations, students and baselines come from different trainers,
and a comparison is only fair when one piece of code scores them all with the same training-side
inputs. Here the training outcomes of a fold (Uno's censoring weights and tau, the td-AUC/IBS
grid window) come from the shared split table and the sample sheet, i.e. they are the same for
every model. ``metrics.json`` is still cross-checked: when the recomputed primary metric differs
from the trainer's, a warning names the fold (a mismatch means one of the two read the data
wrongly).

Output tables (all long format, one row per number, so nothing undefined disappears):

* ``metrics.csv``: ``task, model, fold, metric, value, reason`` (reason set exactly when the value
  is NaN);
* ``summary.csv``: ``task, model, metric, mean, std, n_folds, n_defined, reasons``;
* ``comparisons.csv``: every model against the reference (the first / main model), per metric a
  paired t-test and a Wilcoxon signed-rank test over folds, and per task a patient bootstrap CI
  of the pooled primary metric's difference (columns ``COMPARISON_COLUMNS``; ``difference`` is
  model - reference).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from duopath.evaluation.calibration import CALIBRATION_METRICS, calibration_metrics
from duopath.evaluation.classification import CLASSIFICATION_METRICS
from duopath.evaluation.cohort_tables import CohortTables
from duopath.evaluation.compare import (
    LONG_COLUMNS,
    bootstrap_pooled_difference,
    compare_models,
    long_table,
    summarize_folds,
)
from duopath.evaluation.metrics import (
    SURVIVAL_METRICS,
    evaluate_classification_predictions,
    evaluate_survival_predictions,
    pooled_classification_metric,
    pooled_harrell_c,
    survival_columns,
)
from duopath.evaluation.result import MetricResult, undefined
from duopath.io import write_table
from duopath.layout import FOLD_FILES, TASKS
from duopath.modalities import model_has_task

log = logging.getLogger(__name__)

TASK_METRICS: dict[str, tuple[str, ...]] = {
    "survival": SURVIVAL_METRICS + CALIBRATION_METRICS,
    "classification": CLASSIFICATION_METRICS,
}
#: The same for every model of a fold (a reference line, not a model property): not compared.
MODEL_FREE_METRICS = frozenset({"ibs_km"})
#: The metric of the pooled bootstrap comparison and of the ablation table's headline.
PRIMARY_METRIC = {"survival": "c_harrell", "classification": "auc"}
#: Every other metric is "higher is better" (the report bolds the best mean accordingly).
LOWER_IS_BETTER = frozenset({"ibs", *CALIBRATION_METRICS})

METRICS_COLUMNS = ("task", *LONG_COLUMNS)
SUMMARY_COLUMNS = ("task", "model", "metric", "mean", "std", "n_folds", "n_defined", "reasons")
#: ``test``: paired_t | wilcoxon (over folds; ``n`` = folds used, ``value`` / ``reference_value``
#: = the two models' means over those folds, ``p_value``; paired_t also the 95 % t interval of the
#: mean fold difference in ``ci_low``/``ci_high``) or bootstrap (pooled out-of-fold
#: predictions; ``n`` = patients, ``ci_low``/``ci_high`` the percentile CI; no p-value). Columns
#: that a test does not produce are empty; ``reason`` says why an estimate or p is undefined.
COMPARISON_COLUMNS = (
    "task",
    "model",
    "reference",
    "metric",
    "test",
    "n",
    "value",
    "reference_value",
    "difference",
    "ci_low",
    "ci_high",
    "p_value",
    "reason",
)

PREDICTIONS_FILE = FOLD_FILES["predictions"]
INNER_FILE = FOLD_FILES["inner_predictions"]
INFO_FILE = FOLD_FILES["metrics"]
TRAIN_LOG_FILE = FOLD_FILES["train_log"]
HEATMAP_DIR = "heatmaps"
_FOLD_DIR = re.compile(r"^fold(\d+)$")


# --------------------------------------------------------------------------- one fold's outputs


def time_bin_edges(info: Mapping[str, Any], where: Path) -> np.ndarray | None:
    """``time_bins`` of metrics.json as floats; the last edge is inf, which JSON writes as null."""
    raw = info.get("time_bins")
    if raw is None:
        return None
    edges = [math.inf if (v is None and i == len(raw) - 1) else v for i, v in enumerate(raw)]
    if any(v is None for v in edges):
        raise ValueError(f"{where}: time_bins {raw} has an unknown interior edge")
    return np.asarray(edges, dtype=float)


@dataclass(frozen=True)
class FoldRun:
    """One model's outputs on one outer fold (``predictions`` is None when the fold is missing)."""

    task: str
    model: str
    fold: int
    directory: Path
    predictions: pd.DataFrame | None
    info: Mapping[str, Any]
    missing: str | None = None  # why there are no predictions

    @property
    def bin_edges(self) -> np.ndarray | None:
        """The fold's training time-bin edges (K+1, last = inf), for ``surv_<k>`` columns."""
        return time_bin_edges(self.info, self.directory / INFO_FILE)

    @property
    def class_names(self) -> list[str] | None:
        names = self.info.get("class_names")
        return None if names is None else [str(c) for c in names]

    @property
    def has_survival_curves(self) -> bool:
        return self.predictions is not None and bool(survival_columns(self.predictions))

    def inner_predictions(self) -> pd.DataFrame | None:
        """Train/val predictions of the selected model (``role`` column), when the trainer wrote them."""
        path = self.directory / INNER_FILE
        return pd.read_parquet(path) if path.exists() else None

    def train_log(self) -> pd.DataFrame | None:
        path = self.directory / TRAIN_LOG_FILE
        return pd.read_csv(path) if path.exists() else None

    def heatmaps(self) -> list[Path]:
        """``heatmaps/*.png`` of the fold (written by the heatmap step, when it ran)."""
        return sorted((self.directory / HEATMAP_DIR).glob("*.png"))

    def heatmap_index(self) -> dict | None:
        """``heatmaps/heatmaps.json`` (which patients the heatmap step chose and why), when it ran."""
        path = self.directory / HEATMAP_DIR / "heatmaps.json"
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as err:
            log.warning("%s unreadable: %s", path, err)
            return None


def load_fold(directory: Path, task: str, model: str, fold: int) -> FoldRun:
    """Read one fold's predictions and metrics.json; a missing or incomplete fold is not an error.

    A fold with ``predictions.parquet`` but no ``metrics.json`` is treated as incomplete (the
    trainer writes metrics.json last), so a killed run is never scored.
    """
    pred_path, info_path = directory / PREDICTIONS_FILE, directory / INFO_FILE
    if not pred_path.exists():
        why = f"no {PREDICTIONS_FILE} (fold not run or failed)"
        log.warning("%s/%s fold %d: %s", task, model, fold, why)
        return FoldRun(task, model, fold, directory, None, {}, why)
    if not info_path.exists():
        why = f"incomplete fold: {PREDICTIONS_FILE} without {INFO_FILE}"
        log.warning("%s/%s fold %d: %s", task, model, fold, why)
        return FoldRun(task, model, fold, directory, None, {}, why)
    pred = pd.read_parquet(pred_path)
    if "patient_id" not in pred.columns:
        raise ValueError(f"{pred_path}: no patient_id column")
    pred["patient_id"] = pred["patient_id"].astype(str)
    if "fold" in pred.columns and (pred["fold"].astype(int) != fold).any():
        raise ValueError(
            f"{pred_path}: rows of folds {sorted(pred['fold'].unique())} in the fold{fold} directory"
        )
    twice = pred["patient_id"][pred["patient_id"].duplicated()]
    if not twice.empty:
        raise ValueError(f"{pred_path}: patients predicted twice: {twice.tolist()[:5]}")
    return FoldRun(task, model, fold, directory, pred, json.loads(info_path.read_text()))


def discover_tasks(results_dir: Path | str) -> list[str]:
    """Task directories present under ``results/{cohort}`` (in ``TASKS`` order)."""
    return [t for t in TASKS if (Path(results_dir) / t).is_dir()]


def discover_models(results_dir: Path | str, task: str) -> list[str]:
    """Model directories under ``results/{cohort}/{task}`` that hold at least one fold, sorted."""
    base = Path(results_dir) / task
    if not base.is_dir():
        return []
    return sorted(
        d.name for d in base.iterdir() if d.is_dir() and any(_FOLD_DIR.match(f.name) for f in d.iterdir())
    )


def load_runs(
    results_dir: Path | str, task: str, models: Sequence[str], folds: Sequence[int]
) -> dict[str, list[FoldRun]]:
    """``{model: [FoldRun per fold]}`` for the listed models, in the given order.

    Raises ValueError for a model without any result directory (a typo or a model that was never
    trained must not turn into a row of n/a's); a missing single fold becomes NaN-with-reason rows.
    """
    if len(set(models)) != len(models):
        raise ValueError(f"models listed twice: {list(models)}")
    base = Path(results_dir) / task
    runs: dict[str, list[FoldRun]] = {}
    for model in models:
        mdir = base / model
        if not mdir.is_dir():
            raise ValueError(
                f"no results for model {model!r} ({task}) in {mdir}; "
                f"found: {discover_models(results_dir, task)}"
            )
        extra = sorted(
            int(m.group(1))
            for d in mdir.iterdir()
            if (m := _FOLD_DIR.match(d.name)) and int(m.group(1)) not in folds
        )
        if extra:
            log.warning(
                "%s/%s: fold directories %s are not folds of the split table; ignored", task, model, extra
            )
        runs[model] = [load_fold(mdir / f"fold{k}", task, model, k) for k in folds]
    return runs


# --------------------------------------------------------------------------- metrics


def check_test_patients(run: FoldRun, tables: CohortTables) -> None:
    """Predictions must be of the fold's TEST patients only (a train/val patient there is leakage).

    Test patients without a prediction (left out by the trainer, e.g. no RNA) are logged.
    """
    assert run.predictions is not None
    test = set(tables.role(run.fold, "test"))
    got = set(run.predictions["patient_id"])
    foreign = sorted(got - test)
    if foreign:
        raise ValueError(
            f"{run.directory / PREDICTIONS_FILE}: patients {foreign[:5]} are not test "
            f"patients of fold {run.fold} in the split table"
        )
    if test - got:
        log.info(
            "%s/%s fold %d: %d of %d test patients have no prediction (left out by the trainer)",
            run.task,
            run.model,
            run.fold,
            len(test - got),
            len(test),
        )


def fold_metrics(run: FoldRun, tables: CohortTables) -> dict[str, MetricResult]:
    """Every metric of ``run.task`` on one fold; NaN with a reason where undefined or missing."""
    names = TASK_METRICS[run.task]
    if run.predictions is None:
        return {m: MetricResult(math.nan, str(run.missing)) for m in names}
    pred = run.predictions
    check_test_patients(run, tables)
    if pred.empty:
        return {m: undefined(m, "no test predictions (every test patient left out)") for m in names}
    where = f"{run.task}/{run.model}/fold{run.fold}"
    try:
        if run.task == "survival":
            train_time, train_event = tables.train_outcomes(run.fold)
            edges = run.bin_edges if survival_columns(pred) else None
            if survival_columns(pred) and edges is None:
                raise ValueError(f"predictions carry surv_<k> columns but {INFO_FILE} has no time_bins")
            out = evaluate_survival_predictions(pred, train_time, train_event, edges)
            out |= _calibration(run, pred, train_time, train_event, edges)
        else:
            out = evaluate_classification_predictions(pred)
    except ValueError as err:  # invalid inputs are an upstream bug: keep failing, say where
        raise ValueError(f"{where}: {err}") from err
    _cross_check(run, out)
    return out


def _calibration(run: FoldRun, pred: pd.DataFrame, train_time: np.ndarray, train_event: np.ndarray,
                 edges: np.ndarray | None) -> dict[str, MetricResult]:
    """IBS of the Kaplan–Meier null, the interpolated and the recalibrated curves (``calibration``).

    The recalibration is fit on the fold's inner VALIDATION predictions (``inner_predictions``);
    a model that wrote none gets ``ibs_recal`` NaN with that reason.
    """
    from duopath.evaluation.curves import SurvivalCurve

    cols = survival_columns(pred)
    curve = SurvivalCurve.from_survival_columns(pred[cols].to_numpy(float), edges) if cols else None
    inner = run.inner_predictions()
    val = None
    if inner is not None and "role" in inner.columns:
        v = inner[inner["role"] == "val"].dropna(subset=["time", "event", "risk"])
        if len(v):
            val = (v["risk"].to_numpy(float), v["time"].to_numpy(float), v["event"].to_numpy(float))
    return calibration_metrics(train_time, train_event, pred["time"].to_numpy(float),
                               pred["event"].to_numpy(), pred["risk"].to_numpy(float),
                               curve=curve, val=val)


def _cross_check(run: FoldRun, out: Mapping[str, MetricResult]) -> None:
    """Warn when the trainer's own score of the primary metric differs from the recomputed one."""
    name = PRIMARY_METRIC[run.task]
    theirs = (run.info.get("test") or {}).get(name)
    ours = out.get(name)
    if theirs is None or ours is None or not ours.ok:
        return
    if not math.isclose(float(theirs), ours.value, rel_tol=1e-6, abs_tol=1e-9):
        log.warning(
            "%s/%s fold %d: %s recomputed from %s is %.6f but %s says %.6f",
            run.task,
            run.model,
            run.fold,
            name,
            PREDICTIONS_FILE,
            ours.value,
            INFO_FILE,
            float(theirs),
        )


def metrics_table(runs: Mapping[str, Mapping[str, Sequence[FoldRun]]], tables: CohortTables) -> pd.DataFrame:
    """Long table (``METRICS_COLUMNS``) over ``{task: {model: [runs]}}``, in the given orders."""
    parts = [
        long_table(model, run.fold, fold_metrics(run, tables)).assign(task=task)
        for task, by_model in runs.items()
        for model, model_runs in by_model.items()
        for run in model_runs
    ]
    if not parts:
        return pd.DataFrame(columns=list(METRICS_COLUMNS))
    return pd.concat(parts, ignore_index=True)[list(METRICS_COLUMNS)]


def summary_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over folds per task × model × metric (``summarize_folds`` per task)."""
    parts = [
        summarize_folds(g.drop(columns="task")).assign(task=task)
        for task, g in metrics.groupby("task", sort=False)
    ]
    if not parts:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    return pd.concat(parts, ignore_index=True)[list(SUMMARY_COLUMNS)]


# --------------------------------------------------------------------------- comparisons


def pooled_predictions(runs: Sequence[FoldRun]) -> pd.DataFrame:
    """Out-of-fold test predictions of one model, all available folds concatenated."""
    frames = [r.predictions for r in runs if r.predictions is not None]
    if not frames:
        return pd.DataFrame(columns=["patient_id", "fold"])
    return pd.concat(frames, ignore_index=True)


def _comparison_row(task: str, model: str, reference: str, metric: str, test: str, **values: Any) -> dict:
    row = dict.fromkeys(COMPARISON_COLUMNS, math.nan)
    row.update(task=task, model=model, reference=reference, metric=metric, test=test, reason="")
    row.update(values)
    return row


def _paired_rows(task: str, long: pd.DataFrame, model: str, reference: str, metric: str) -> list[dict]:
    res = compare_models(long, model, reference, metric)
    sel = long[long["metric"] == metric]
    means = {}
    for m in (model, reference):
        g = sel[sel["model"] == m].set_index("fold")["value"].astype(float)
        means[m] = float(g.loc[list(res.folds)].mean()) if res.folds else math.nan
    dropped = f"folds {[int(f) for f in res.dropped]} left out (undefined for a model)" if res.dropped else ""
    rows = []
    for test, p in (("paired_t", res.t_p), ("wilcoxon", res.wilcoxon_p)):
        reason = "; ".join(r for r in (p.reason, dropped) if r)
        ci = (res.ci_low, res.ci_high) if test == "paired_t" else (math.nan, math.nan)
        rows.append(
            _comparison_row(
                task,
                model,
                reference,
                metric,
                test,
                n=len(res.folds),
                value=means[model],
                reference_value=means[reference],
                difference=res.mean_difference,
                ci_low=ci[0],
                ci_high=ci[1],
                p_value=p.value,
                reason=reason,
            )
        )
    return rows


def _bootstrap_row(
    task: str, runs: Mapping[str, Sequence[FoldRun]], model: str, reference: str, n_boot: int, seed: int
) -> dict:
    metric = PRIMARY_METRIC[task]
    fn = pooled_harrell_c if task == "survival" else pooled_classification_metric(metric)
    a, b = pooled_predictions(runs[model]), pooled_predictions(runs[reference])
    common = sorted(set(a["patient_id"]) & set(b["patient_id"]))
    if not common:
        return _comparison_row(
            task,
            model,
            reference,
            metric,
            "bootstrap",
            n=0,
            reason="no patient has predictions of both models",
        )
    only = len(set(a["patient_id"]) ^ set(b["patient_id"]))
    a = a[a["patient_id"].isin(common)].reset_index(drop=True)
    b = b[b["patient_id"].isin(common)].reset_index(drop=True)
    if task == "classification":
        for name, frame in ((model, a), (reference, b)):
            probs = frame.filter(like="prob_")
            if probs.isna().any().any():
                return _comparison_row(
                    task,
                    model,
                    reference,
                    metric,
                    "bootstrap",
                    n=len(common),
                    reason=f"{name}: folds predict different class sets",
                )
    res = bootstrap_pooled_difference(a, b, fn, n_boot=n_boot, seed=seed)
    reasons = [r for r in (res.difference.reason,) if r]
    if res.difference.ok and res.n_valid < 2:
        reasons.append(f"only {res.n_valid} of {n_boot} bootstrap replicates defined: no CI")
    if only:
        reasons.append(f"{only} patients predicted by only one of the two models left out")
    return _comparison_row(
        task,
        model,
        reference,
        metric,
        "bootstrap",
        n=len(common),
        value=res.value_a.value,
        reference_value=res.value_b.value,
        difference=res.difference.value,
        ci_low=res.ci_low,
        ci_high=res.ci_high,
        reason="; ".join(reasons),
    )


def comparisons_table(
    metrics: pd.DataFrame,
    runs: Mapping[str, Mapping[str, Sequence[FoldRun]]],
    reference: str,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Every model vs ``reference`` per task: paired tests per metric + the pooled bootstrap.

    Why against one reference rather than all pairs: the question the report answers is "does
    the main model beat each alternative / does each ablation hurt it"; all pairs would multiply
    the tests without answering anything more.
    """
    rows: list[dict] = []
    for task, by_model in runs.items():
        if reference not in by_model:
            raise ValueError(f"reference model {reference!r} has no {task} results")
        long = metrics[metrics["task"] == task]
        for model in by_model:
            if model == reference:
                continue
            for metric in TASK_METRICS[task]:
                if metric not in MODEL_FREE_METRICS:
                    rows += _paired_rows(task, long, model, reference, metric)
            rows.append(_bootstrap_row(task, by_model, model, reference, n_boot, seed))
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))


# --------------------------------------------------------------------------- the whole cohort


@dataclass(frozen=True)
class Evaluation:
    """Everything the evaluate step produces for one cohort (models in report order)."""

    models: list[str]  # the first is the reference / main model
    runs: dict[str, dict[str, list[FoldRun]]]  # task -> model -> runs
    metrics: pd.DataFrame
    summary: pd.DataFrame
    comparisons: pd.DataFrame

    @property
    def reference(self) -> str:
        return self.models[0]


def evaluate_cohort(
    results_dir: Path | str,
    tables: CohortTables,
    models: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> Evaluation:
    """Score every listed model of every task of a cohort on the folds of its split table.

    ``models``: main model first (the reference of every comparison); default: the model
    directories found, sorted (then the reference is simply the first name). ``tasks``: default
    the task directories present. A model missing from one of its tasks is an error (the lists
    come from the DAG, so a gap means a wiring bug); a model without a task
    (``duopath.modalities.MODEL_TASKS``) is not looked for there.
    """
    results_dir = Path(results_dir)
    tasks = list(tasks) if tasks else discover_tasks(results_dir)
    if not tasks:
        raise ValueError(f"no task directories ({'/'.join(TASKS)}) under {results_dir}")
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        raise ValueError(f"unknown tasks {bad}; use {list(TASKS)}")
    if models:
        model_list = list(models)
    else:
        found = [discover_models(results_dir, t) for t in tasks]
        model_list = sorted(set().union(*found))
        if not model_list:
            raise ValueError(f"no model results under {results_dir}")
        log.info("models found (reference = first): %s", model_list)
    # a model defined for some tasks only (CoxNet: survival) is scored on those
    runs = {t: load_runs(results_dir, t, [m for m in model_list if model_has_task(m, t)], tables.folds)
            for t in tasks}
    metrics = metrics_table(runs, tables)
    return Evaluation(
        models=model_list,
        runs=runs,
        metrics=metrics,
        summary=summary_table(metrics),
        comparisons=comparisons_table(metrics, runs, model_list[0], n_boot=n_boot, seed=seed),
    )


def write_evaluation(
    ev: Evaluation, metrics_csv: Path | str, summary_csv: Path | str, comparisons_csv: Path | str
) -> None:
    """The three CSVs, each written atomically."""
    write_table(metrics_csv, ev.metrics)
    write_table(summary_csv, ev.summary)
    write_table(comparisons_csv, ev.comparisons)


def read_table(path: Path | str, columns: Sequence[str]) -> pd.DataFrame:
    """Read back one of the CSVs; empty reason cells become "" (never the string 'nan')."""
    df = pd.read_csv(
        path, dtype={"model": str, "reference": str, "metric": str, "task": str}, keep_default_na=True
    )
    missing = set(columns) - set(df.columns)
    if missing:
        raise ValueError(f"{path}: lacks columns {sorted(missing)}")
    for col in ("reason", "reasons"):
        if col in df.columns:
            df[col] = df[col].fillna("").astype(str)
    return df[list(columns)]
