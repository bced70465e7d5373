"""The planted truth's own score on the test folds: the ceiling a demo model is read against.

A synthetic cohort (``duopath.demo``) knows, per patient, the linear predictor that drives the
hazard and the true probability of the class label (``truth.csv``: ``linear_predictor``,
``label_probability``). Scoring those with the same metric code on the SAME test folds as the
models says how high a perfect model could reach on these very patients: with ~24 patients a
fold, even the truth's C-index is ~0.75 and varies by fold, so "teacher 0.72" only means
something next to "truth 0.75 on the same folds". The rows use the long ``metrics.csv`` format
(``task, model, fold, metric, value, reason``) with ``model`` = :data:`TRUTH_MODEL`, so the
report can show them as a reference line with the models' own summary code.

Only ranking metrics are produced (Harrell's C, AUC): the truth has no calibrated survival curve
or a class decision threshold to score Uno's C windows, the Brier score or accuracy against.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.metrics import roc_auc_score

from duopath.evaluation.compare import summarize_folds
from duopath.evaluation.result import MetricResult, computed, undefined
from duopath.evaluation.survival import harrell_c

#: ``model`` value of the reference rows.
TRUTH_MODEL = "planted_truth"
#: Which truth column scores which task, and under which metric name (as in ``metrics.csv``).
TRUTH_SCORES = {
    "survival": ("linear_predictor", "c_harrell"),
    "classification": ("label_probability", "auc"),
}
REFERENCE_COLUMNS = ("task", "model", "fold", "metric", "value", "reason")
#: The label whose probability ``label_probability`` is (the demo's high grade).
POSITIVE_LABEL = "high"


def read_truth(path: Path) -> pd.DataFrame:
    """``truth.csv`` of a demo cohort, checked for the columns the reference needs."""
    truth = pd.read_csv(path, keep_default_na=False, dtype={"patient_id": str})
    need = {"patient_id", "time", "event", "label"} | {col for col, _ in TRUTH_SCORES.values()}
    missing = sorted(need - set(truth.columns))
    if missing:
        raise ValueError(
            f"{path}: truth table lacks columns {missing}; regenerate the demo cohort "
            "(`duopath demo`) with this version of duopath"
        )
    if truth["patient_id"].duplicated().any():
        dup = truth.loc[truth["patient_id"].duplicated(), "patient_id"].tolist()[:3]
        raise ValueError(f"{path}: patients listed more than once, e.g. {dup}")
    return truth


def _auc(label: pd.Series, probability: pd.Series) -> MetricResult:
    """AUC of ``probability`` for the positive label, as the models' AUC is computed (sklearn)."""
    y = (label.astype(str) == POSITIVE_LABEL).to_numpy()
    if y.size == 0:
        return undefined("AUC", "empty test fold")
    if y.all() or not y.any():
        return undefined("AUC", f"a single class in the test fold ({label.iloc[0]!r})")
    return computed(roc_auc_score(y, probability.to_numpy(dtype=float)))


def truth_reference(
    truth: pd.DataFrame,
    splits: pd.DataFrame,
    tasks: Sequence[str] = ("survival", "classification"),
    scored: Mapping[tuple[str, int], Collection[str]] | None = None,
) -> pd.DataFrame:
    """Per task and outer fold, the planted truth's metric on that fold's TEST patients.

    ``splits`` is the shared split table (``fold, patient_id, role``); ``scored`` optionally
    restricts a ``(task, fold)`` to the patients the models were scored on (e.g. the teacher
    leaves out patients without RNA), so the ceiling is computed on exactly those. A fold whose
    metric is undefined keeps a row with NaN and the reason, as model rows do.
    """
    for col in ("fold", "patient_id", "role"):
        if col not in splits.columns:
            raise ValueError(f"split table lacks column {col!r}")
    unknown = sorted(set(tasks) - set(TRUTH_SCORES))
    if unknown:
        raise ValueError(f"no planted-truth score for tasks {unknown}; known: {sorted(TRUTH_SCORES)}")
    by_patient = truth.set_index("patient_id")
    test = splits[splits["role"] == "test"]
    absent = sorted(set(test["patient_id"]) - set(by_patient.index))
    if absent:
        raise ValueError(f"{len(absent)} test patients are not in the truth table, e.g. {absent[:3]}")
    rows = []
    for task in tasks:
        column, metric = TRUTH_SCORES[task]
        for fold, group in test.groupby("fold", sort=True):
            ids = list(group["patient_id"])
            if scored is not None and (task, int(fold)) in scored:
                keep = set(scored[(task, int(fold))])
                ids = [p for p in ids if p in keep]
            t = by_patient.loc[ids]
            if task == "survival":
                res = harrell_c(t["time"].to_numpy(float), t["event"].to_numpy(int),
                                t[column].to_numpy(float))
            else:
                res = _auc(t["label"], t[column])
            rows.append((task, TRUTH_MODEL, int(fold), metric, res.value, res.reason or ""))
    return pd.DataFrame(rows, columns=list(REFERENCE_COLUMNS))


def truth_reference_from_files(
    truth_csv: Path,
    splits_csv: Path,
    tasks: Sequence[str] = ("survival", "classification"),
    scored: Mapping[tuple[str, int], Collection[str]] | None = None,
) -> pd.DataFrame:
    """:func:`truth_reference` from a demo's ``truth.csv`` and the cohort's ``splits/{cohort}.csv``."""
    splits = pd.read_csv(splits_csv, keep_default_na=False, dtype={"patient_id": str})
    return truth_reference(read_truth(Path(truth_csv)), splits, tasks, scored)


def scored_patients(
    runs: Mapping[str, Mapping[str, Sequence[Any]]], model: str
) -> dict[tuple[str, int], list[str]]:
    """``(task, fold) -> test patients`` that ``model`` has predictions for, from the evaluate
    step's runs (task -> model -> :class:`~duopath.evaluation.collect.FoldRun`): the patients the
    ceiling is computed on, so it is read against the main model on exactly its patients."""
    out: dict[tuple[str, int], list[str]] = {}
    for task, by_model in runs.items():
        for run in by_model.get(model, []):
            if run.predictions is not None:
                out[(task, int(run.fold))] = run.predictions["patient_id"].astype(str).tolist()
    return out


def summarize_reference(reference: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over folds per task: one reference line per task, in ``summary.csv``'s columns
    (the models' own :func:`~duopath.evaluation.compare.summarize_folds`)."""
    parts = [summarize_folds(g.drop(columns="task")).assign(task=task)
             for task, g in reference.groupby("task", sort=False)]
    columns = ["task", "model", "metric", "mean", "std", "n_folds", "n_defined", "reasons"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)
