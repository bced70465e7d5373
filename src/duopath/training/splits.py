"""Patient-level, stratified, site-aware cross-validation splits with an inner validation set.

Why each property:
- *patient-level*: two slides of one patient in train and test leak the patient's morphology.
- *site-disjoint* (tissue-source site): TCGA sites differ in staining and scanner; a model that
  sees the test site in training is scored on batch effects, not biology (Howard et al. 2021).
  Used when there are at least as many sites as folds (``site_disjoint: auto``), else a
  warning is logged and recorded in the split file's metadata.
- *stratified* by event (survival) or label (classification): small folds without events make
  C-index undefined. In a mixed cohort (some patients without RNA or without a slide, as the
  sample sheet declares them) also by which modalities a patient has, so every fold tests
  about the same share of RNA-less patients and the multi-modal models' test sets stay the same
  size; when an (outcome, modalities) group has fewer patients than folds, by outcome alone
  (logged and recorded as ``strata`` in the split metadata). RNA listed in the sheet but
  unusable in the matrix is not known here (the split rule reads the sheet only, so a change to
  RNA processing re-runs no split).
- *inner validation* split of each training fold: model selection / early stopping never looks
  at the test fold (the reference code scores its last epoch on the test fold).

Output (one table for every model of a cohort, so all compare on the same patients): long
format ``fold, patient_id, role (train|val|test), site, stratum``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from duopath.modalities import RNA, SLIDE, patient_modalities

log = logging.getLogger(__name__)

ROLES = ("train", "val", "test")
# Each outer fold needs patients to test on and a training side left for the inner split.
MIN_PATIENTS_PER_FOLD = 2


class SplitError(ValueError):
    """The cohort cannot be split as asked (too few patients, events or sites)."""


@dataclass(frozen=True)
class SplitInfo:
    folds: int
    site_disjoint: bool
    reason: str
    seed: int
    strata: str = "outcome"


def patient_table(sheet: pd.DataFrame, task: str) -> pd.DataFrame:
    """One row per patient: site, stratum (event or label) and ``modalities`` (``slide+rna``,
    ``slide`` or ``rna``: what the canonical sheet declares, ``modalities.patient_modalities``),
    from the per-slide sheet."""
    cols = ["patient_id", "site", "event" if task == "survival" else "label"]
    patients = sheet[cols].drop_duplicates("patient_id").reset_index(drop=True)
    patients["site"] = patients["site"].fillna("").astype(str)
    patients["stratum"] = patients[cols[2]].astype(str)
    has = patient_modalities(sheet).loc[patients["patient_id"].astype(str)]
    patients["modalities"] = ["+".join(m for m, ok in ((SLIDE, s), (RNA, r)) if ok)
                              for s, r in zip(has[SLIDE], has[RNA], strict=True)]
    return patients[["patient_id", "site", "stratum", "modalities"]]


def _strata(patients: pd.DataFrame, folds: int) -> tuple[np.ndarray, str]:
    """The labels the folds are stratified on: outcome x modalities in a mixed cohort whose every
    (outcome, modalities) group can reach every fold, else the outcome (module docstring)."""
    y = patients["stratum"].to_numpy()
    if "modalities" not in patients or patients["modalities"].nunique() < 2:
        return y, "outcome"
    both = patients["stratum"].astype(str) + "|" + patients["modalities"].astype(str)
    counts = both.value_counts()
    if counts.min() < folds:
        log.info("splits: stratified by outcome only: the (outcome|modalities) group %r has %d "
                    "patients for %d folds", counts.idxmin(), counts.min(), folds)
        return y, "outcome (a modality group is smaller than the fold count)"
    return both.to_numpy(), "outcome and modalities"


def make_splits(
    patients: pd.DataFrame,
    *,
    folds: int,
    val_fraction: float,
    seed: int,
    site_disjoint: str = "auto",
) -> tuple[pd.DataFrame, SplitInfo]:
    """k-fold splits of ``patients`` (columns patient_id, site, stratum, and optionally
    modalities); see module docstring."""
    n = len(patients)
    if n < folds * MIN_PATIENTS_PER_FOLD:
        raise SplitError(f"{n} patients cannot make {folds} folds (need ≥ "
                         f"{MIN_PATIENTS_PER_FOLD * folds}); lower training.folds")
    counts = patients["stratum"].value_counts()
    if counts.min() < folds:
        log.warning("stratum %r has %d patients for %d folds: some test folds will lack it",
                    counts.idxmin(), counts.min(), folds)
    sites = patients["site"]
    n_sites = sites[sites != ""].nunique()
    if site_disjoint == "auto":
        use_sites = (sites != "").all() and n_sites >= folds
        reason = (f"{n_sites} sites ≥ {folds} folds" if use_sites else
                  f"only {n_sites} known sites for {folds} folds: folds are NOT site-disjoint")
    elif site_disjoint == "yes":
        if not ((sites != "").all() and n_sites >= folds):
            raise SplitError(f"site-disjoint {folds}-fold CV needs ≥ {folds} sites on every "
                             f"patient; found {n_sites}")
        use_sites, reason = True, "site-disjoint as configured"
    else:
        use_sites, reason = False, "site-disjoint disabled in config"
    if not use_sites:
        log.warning("splits: %s", reason)

    y, strata = _strata(patients, folds)
    outcome = patients["stratum"].to_numpy()
    idx = np.arange(n)
    if use_sites:
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        outer = splitter.split(idx, y, groups=sites.to_numpy())
    else:
        strat = y if pd.Series(y).value_counts().min() >= folds else None
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        outer = splitter.split(idx, strat if strat is not None else np.zeros(n))

    rows = []
    for k, (train_idx, test_idx) in enumerate(outer):
        inner_y = y[train_idx]
        n_val = max(1, round(val_fraction * len(train_idx)))
        if n_val >= len(train_idx):
            raise SplitError(f"fold {k}: {len(train_idx)} training patients leave none after "
                             "the validation split; use fewer folds or more patients")
        tr, va = train_test_split(train_idx, test_size=n_val, random_state=seed + k,
                                  stratify=_inner_strata(inner_y, outcome[train_idx], n_val=n_val))
        for role, members in (("train", tr), ("val", va), ("test", test_idx)):
            for i in members:
                rows.append((k, patients.at[i, "patient_id"], role, patients.at[i, "site"],
                             patients.at[i, "stratum"]))
    table = pd.DataFrame(rows, columns=["fold", "patient_id", "role", "site", "stratum"])
    table = table.sort_values(["fold", "role", "patient_id"], kind="stable").reset_index(drop=True)
    return table, SplitInfo(folds=folds, site_disjoint=use_sites, reason=reason, seed=seed, strata=strata)


def _inner_strata(*candidates: np.ndarray, n_val: int) -> np.ndarray | None:
    """The first labels (finest first) that let the inner split stratify: every stratum can
    appear on both sides; None (a plain random split) when none can."""
    for y in candidates:
        _, counts = np.unique(y, return_counts=True)
        if counts.min() >= 2 and n_val >= len(counts) and len(y) - n_val >= len(counts):
            return y
    return None


def fold_patients(splits: pd.DataFrame, fold: int, role: str) -> list[str]:
    """Patient IDs of one role in one fold, in a stable order."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    sel = splits[(splits["fold"] == fold) & (splits["role"] == role)]
    return sorted(sel["patient_id"].astype(str))
