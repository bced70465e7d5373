"""One fold's data: who is in which role, and everything fit on the fold's TRAINING patients.

Protocol (DESIGN.md "Known defects of the reference code" is the list of what NOT to do):

* **Roles come from the shared split table** (``splits/{cohort}.csv``); a patient in two roles
  of one fold is an error, not a warning.
* **Everything fit from data is fit on the TRAINING patients of the fold**: survival time bins
  (quartiles of training uncensored times), class names and class weights, the RNA z-score
  scaler, and the RNA-mean ablation's mean vector.
* **Students** (``student`` argument of :func:`prepare_fold`) read slides only, so every
  validation and test patient with a usable slide and an outcome is kept, RNA or not (the
  students are scored on the same patients as each other and as the slide-only baselines);
  training patients without RNA are kept for the task loss (``student.slide_only_patients:
  task``) or left out (``exclude``). The time bins and class names are fit on the training
  patients the fold's TEACHER used (the student's outputs are distilled from its bins); the
  class weights on the student's own training patients (they weight its task loss).

:class:`CohortInputs` holds what every fold of one (cohort, task, model) reads -- the sample sheet,
the split table, the RNA AnnData and the feature stores with their in-memory cache -- so a caller
can load it once and train several folds in one process (:func:`duopath.training.run.run_fold`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from torch import Tensor

from duopath.cohort import read_canonical_sheet
from duopath.config import TeacherConfig
from duopath.training.batch import Sample
from duopath.training.data import BagStore, DataError
from duopath.training.genes import FoldGenes, fold_genes, no_genes
from duopath.training.losses import assign_bins, class_weights, fit_time_bins
from duopath.training.slide_free import SlideFreeStore
from duopath.training.splits import ROLES

log = logging.getLogger(__name__)


@dataclass
class CohortInputs:
    """What every fold of one cohort reads (loaded once, shared by the folds of a process)."""

    sheet: pd.DataFrame
    splits: pd.DataFrame
    adata: object | None
    store: BagStore


def load_inputs(
    *,
    sheet: Path | str,
    splits: Path | str,
    rna: Path | str | None,
    features_dir: Path | str,
    magnifications: Sequence[str],
    cache_bytes: float,
    slides: bool = True,
) -> CohortInputs:
    """Read the canonical sheet, the split table, the RNA (``None``: a cohort without RNA) and
    open the feature stores of ``magnifications`` (coarse to fine).

    ``slides`` False: a model without histology input (the SNN) -- no feature store is opened
    (:class:`~duopath.training.slide_free.SlideFreeStore`), so it runs on RNA-only cohorts and
    keeps RNA patients whose slide is missing or failed.
    """
    import anndata as ad

    sheet_df = read_canonical_sheet(sheet)
    splits_df = pd.read_csv(splits, dtype={"patient_id": str})
    adata = None
    if rna is not None:
        if not Path(rna).exists():
            raise DataError(f"RNA file {rna} does not exist (run the rna stage first)")
        adata = ad.read_h5ad(rna)
    if not slides:
        store = SlideFreeStore(sheet_df["patient_id"].astype(str).unique(), magnifications)
        return CohortInputs(sheet=sheet_df, splits=splits_df, adata=adata, store=store)
    # rows of RNA-only patients name no slide: such a patient is left out as "no slide"
    slides_by_patient = {str(p): [s for s in g["slide_id"] if s]
                         for p, g in sheet_df.groupby("patient_id", sort=True)}
    store = BagStore(slides_by_patient, features_dir, magnifications, cache_bytes=cache_bytes)
    return CohortInputs(sheet=sheet_df, splits=splits_df, adata=adata, store=store)


@dataclass
class FoldData:
    """One fold's samples per role and everything fit on its training patients."""

    fold: int
    task: str
    samples: dict[str, list[Sample]]
    genes: FoldGenes
    time_bins: np.ndarray | None = None
    class_names: list[str] | None = None
    class_weights: Tensor | None = None
    excluded: dict[str, str] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        if self.task == "survival":
            assert self.time_bins is not None
            return len(self.time_bins) - 1
        assert self.class_names is not None
        return len(self.class_names)


def fold_roles(splits: pd.DataFrame, fold: int) -> dict[str, list[str]]:
    """Patients per role of one fold; a patient in two roles (or twice) is an error."""
    sel = splits[splits["fold"].astype(int) == int(fold)]
    if sel.empty:
        raise DataError(f"fold {fold} is not in the split table (folds: {sorted(splits['fold'].unique())})")
    bad_roles = sorted(set(sel["role"]) - set(ROLES))
    if bad_roles:
        raise DataError(f"unknown roles {bad_roles} in the split table")
    dup = sel["patient_id"][sel["patient_id"].duplicated()].unique()
    if len(dup):
        rows = sel[sel["patient_id"].isin(dup)].sort_values("patient_id")
        detail = ", ".join(f"{p} ({'/'.join(g['role'])})" for p, g in rows.groupby("patient_id"))
        raise DataError(f"fold {fold}: patients in more than one role: {detail}")
    return {r: sorted(sel.loc[sel["role"] == r, "patient_id"].astype(str)) for r in ROLES}


def patient_outcomes(sheet: pd.DataFrame) -> pd.DataFrame:
    """One row per patient (index patient_id): label, time, event; slides must agree."""
    cols = ["label", "time", "event"]
    df = sheet[["patient_id", *cols]].copy()
    df["patient_id"] = df["patient_id"].astype(str)
    df["label"] = df["label"].fillna("").astype(str).str.strip()
    df["time"] = pd.to_numeric(df["time"], errors="coerce")
    df["event"] = pd.to_numeric(df["event"], errors="coerce")
    per = df.groupby("patient_id")
    for c in cols:
        n = per[c].nunique(dropna=False)
        if (n > 1).any():
            bad = n.index[n > 1][:5].tolist()
            raise DataError(f"slides of patients {bad} disagree on {c!r} in the sample sheet")
    return per.first()


def fit_bins(times: np.ndarray, events: np.ndarray, n_bins: int, fold: int) -> np.ndarray:
    """Training-fold bin edges; fewer bins (with a warning) when the fold cannot fill ``n_bins``.

    Why not fail: a small cohort's training fold may hold fewer uncensored times than bins (or
    tied quartiles); fewer, still training-only, bins keep the fold usable and the log says so.
    Below two bins there is nothing to rank with, and that is an error.
    """
    last: Exception | None = None
    for k in range(n_bins, 1, -1):
        try:
            edges = fit_time_bins(times, events, k)
        except ValueError as err:
            last = err
            continue
        if k < n_bins:
            log.warning("fold %d: %d survival bins instead of %d (%s)", fold, k, n_bins, last)
        return edges
    raise DataError(f"fold {fold}: cannot fit 2 survival time bins from the training patients "
                    f"({int(np.sum(events))} uncensored): {last}")


def prepare_fold(
    sheet: pd.DataFrame,
    splits: pd.DataFrame,
    fold: int,
    store: BagStore,
    adata,
    *,
    task: str,
    cfg: TeacherConfig,
    student: str | None = None,
) -> FoldData:
    """Samples of one fold (see module docstring for what is fit where).

    ``adata`` None: the cohort has no RNA; samples carry empty gene vectors (slide-only models).
    ``cfg``: the teacher settings (a student passes its fold teacher's); ``student``: None for the
    teacher, its ablations and the baselines, else the student's ``slide_only_patients``
    (``task`` | ``exclude``). A sample without measured RNA has ``has_rna`` False (and NaN genes
    when nothing stands in for them), so a student never asks its teacher about it.
    """
    roles = fold_roles(splits, fold)
    outcomes = patient_outcomes(sheet)
    unknown = sorted({p for ps in roles.values() for p in ps} - set(outcomes.index))
    if unknown:
        raise DataError(f"split patients not in the sample sheet (another cohort's split?): {unknown[:5]}")
    excluded: dict[str, str] = {}
    for pid, why in store.excluded.items():
        excluded[pid] = why
    have_rna = set(outcomes.index) if adata is None else set(map(str, adata.obs_names))
    fit_on: list[str] = []  # the teacher's training patients: the output space (bins, classes)
    for role in ROLES:
        keep = []
        for pid in roles[role]:
            row = outcomes.loc[pid]
            if pid not in store.slides:
                excluded.setdefault(pid, "no usable slide")
                continue
            if task == "survival" and not (np.isfinite(row["time"]) and np.isfinite(row["event"])):
                excluded[pid] = "no survival time/event"
                continue
            if task == "classification" and not row["label"]:
                excluded[pid] = "no label"
                continue
            if role == "train" and (pid in have_rna or _keeps_without_rna(role, cfg, None)):
                fit_on.append(pid)
            if pid not in have_rna and not _keeps_without_rna(role, cfg, student):
                excluded[pid] = ("no RNA (teacher.missing_rna: exclude)" if student is None
                                 else f"no RNA, in training (student.slide_only_patients: {student})")
            else:
                keep.append(pid)
        roles[role] = keep
    for pid, why in sorted(excluded.items()):
        log.warning("fold %d: patient %s left out: %s", fold, pid, why)
    if not roles["train"] or not roles["val"] or not roles["test"]:
        raise DataError(f"fold {fold}: a role is empty after exclusions "
                        f"({ {r: len(v) for r, v in roles.items()} })")

    train = roles["train"]
    if not fit_on:
        raise DataError(f"fold {fold}: no training patient has RNA, so there is no teacher to fit "
                        "the survival bins / classes on")
    everyone = [p for r in ROLES for p in roles[r]]
    genes = (no_genes(everyone) if adata is None
             else fold_genes(adata, [p for p in train if p in have_rna], roles["val"] + roles["test"],
                             everyone, cfg.missing_rna))
    data = FoldData(fold=fold, task=task, samples={}, genes=genes, excluded=excluded)
    tr = outcomes.loc[fit_on]
    if task == "survival":
        data.time_bins = fit_bins(tr["time"].to_numpy(), tr["event"].astype(int).to_numpy(),
                                  cfg.time_bins, fold)
    else:
        data.class_names = sorted(tr["label"].unique())
        if len(data.class_names) < 2:
            raise DataError(f"fold {fold}: training patients have one class only {data.class_names}")
        others = [p for r in ("val", "test") for p in roles[r]] + [p for p in train if p not in fit_on]
        unseen = sorted(set(outcomes.loc[others, "label"]) - set(data.class_names))
        if unseen:
            raise DataError(f"fold {fold}: labels {unseen} occur in val/test (or in training patients "
                            "without RNA) but not in the teacher's training patients")
        index = {c: i for i, c in enumerate(data.class_names)}
        data.class_weights = class_weights([index[v] for v in outcomes.loc[train, "label"]],
                                           len(data.class_names))
    # genes of a patient without RNA (none imputed): never read, a student does not ask its
    # teacher about such a patient; NaN so that a mistake could not pass unnoticed
    no_rna = (np.full(len(genes.genes_T), np.nan, np.float32),
              np.full(len(genes.genes_E), np.nan, np.float32))
    for role in ROLES:
        out = []
        for pid in roles[role]:
            row = outcomes.loc[pid]
            if task == "survival":
                target = int(assign_bins([row["time"]], data.time_bins)[0])
            else:
                target = data.class_names.index(row["label"])
            g_t, g_e = genes.values.get(pid, no_rna)
            out.append(Sample(pid, g_t, g_e, target, float(row["event"]), float(row["time"]),
                              str(row["label"]), has_rna=pid in have_rna))
        data.samples[role] = out
    n_without = {r: sum(not s.has_rna for s in data.samples[r]) for r in ROLES}
    log.info("fold %d: %s patients (train/val/test), of which %s without RNA; %d left out", fold,
             "/".join(str(len(data.samples[r])) for r in ROLES),
             "/".join(str(n_without[r]) for r in ROLES), len(excluded))
    return data


def _keeps_without_rna(role: str, cfg: TeacherConfig, student: str | None) -> bool:
    """Whether a patient without RNA is kept in ``role`` (module docstring)."""
    if student is None:
        return cfg.missing_rna == "mean"
    if student not in ("task", "exclude"):
        raise ValueError(f"student.slide_only_patients must be 'task' or 'exclude', got {student!r}")
    return role != "train" or student == "task"
