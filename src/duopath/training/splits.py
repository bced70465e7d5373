"""Patient-level, stratified, site-aware cross-validation splits with an inner validation set.

Why each property:
- *patient-level*: two slides of one patient in train and test leak the patient's morphology.
- *site-disjoint* (tissue-source site): TCGA sites differ in staining and scanner; a model that
  sees the test site in training is scored on batch effects, not biology (Howard et al. 2021).
  Used when there are at least as many sites as folds (``site_disjoint: auto``), else a
  warning is logged and recorded in the split file's metadata.
- *stratified* by event (survival) or label (classification): small folds without events make
  C-index undefined.
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


def patient_table(sheet: pd.DataFrame, task: str) -> pd.DataFrame:
    """One row per patient: site and stratum (event or label), from the per-slide sheet."""
    cols = ["patient_id", "site", "event" if task == "survival" else "label"]
    patients = sheet[cols].drop_duplicates("patient_id").reset_index(drop=True)
    patients["site"] = patients["site"].fillna("").astype(str)
    patients["stratum"] = patients[cols[2]].astype(str)
    return patients[["patient_id", "site", "stratum"]]


def make_splits(
    patients: pd.DataFrame,
    *,
    folds: int,
    val_fraction: float,
    seed: int,
    site_disjoint: str = "auto",
) -> tuple[pd.DataFrame, SplitInfo]:
    """k-fold splits of ``patients`` (columns patient_id, site, stratum); see module docstring."""
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

    y = patients["stratum"].to_numpy()
    idx = np.arange(n)
    if use_sites:
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        outer = splitter.split(idx, y, groups=sites.to_numpy())
    else:
        strat = y if counts.min() >= folds else None
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        outer = splitter.split(idx, strat if strat is not None else np.zeros(n))

    rows = []
    for k, (train_idx, test_idx) in enumerate(outer):
        inner_y = y[train_idx]
        _, inner_counts = np.unique(inner_y, return_counts=True)
        n_val = max(1, round(val_fraction * len(train_idx)))
        if n_val >= len(train_idx):
            raise SplitError(f"fold {k}: {len(train_idx)} training patients leave none after "
                             "the validation split; use fewer folds or more patients")
        # Stratify the inner split only where every stratum can appear on both sides.
        can_stratify = (inner_counts.min() >= 2 and n_val >= len(inner_counts)
                        and len(train_idx) - n_val >= len(inner_counts))
        tr, va = train_test_split(train_idx, test_size=n_val, random_state=seed + k,
                                  stratify=inner_y if can_stratify else None)
        for role, members in (("train", tr), ("val", va), ("test", test_idx)):
            for i in members:
                rows.append((k, patients.at[i, "patient_id"], role, patients.at[i, "site"],
                             patients.at[i, "stratum"]))
    table = pd.DataFrame(rows, columns=["fold", "patient_id", "role", "site", "stratum"])
    table = table.sort_values(["fold", "role", "patient_id"], kind="stable").reset_index(drop=True)
    return table, SplitInfo(folds=folds, site_disjoint=use_sites, reason=reason, seed=seed)


def fold_patients(splits: pd.DataFrame, fold: int, role: str) -> list[str]:
    """Patient IDs of one role in one fold, in a stable order."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    sel = splits[(splits["fold"] == fold) & (splits["role"] == role)]
    return sorted(sel["patient_id"].astype(str))
