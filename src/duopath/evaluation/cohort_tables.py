"""The model-independent inputs of a cohort's evaluation: per-patient outcomes and the splits.

Every model of a cohort is scored against these same tables (the same training patients for
Uno's censoring weights and tau, the same test patients per fold), which is what makes the
models' numbers comparable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from duopath.cohort import read_canonical_sheet


@dataclass(frozen=True)
class CohortTables:
    """The model-independent inputs of a cohort: per-patient outcomes and the shared split table.

    ``patients``: index ``patient_id``; columns ``site``, ``label`` (str, "" = unknown), ``time``,
    ``event`` (float, NaN = unknown), ``n_slides``. ``splits``: ``fold, patient_id, role``.
    """

    patients: pd.DataFrame
    splits: pd.DataFrame
    sheet: pd.DataFrame = field(repr=False)

    @property
    def folds(self) -> list[int]:
        return sorted(int(f) for f in self.splits["fold"].unique())

    def role(self, fold: int, role: str) -> list[str]:
        sel = self.splits[(self.splits["fold"] == fold) & (self.splits["role"] == role)]
        return sorted(sel["patient_id"])

    def train_outcomes(self, fold: int) -> tuple[np.ndarray, np.ndarray]:
        """(time, event) of the fold's TRAINING patients with known follow-up.

        Why from the split table and not from a model's own training set: every model of the
        cohort must be scored with the same censoring distribution and Uno tau.
        """
        ids = self.role(fold, "train")
        known = self.patients.loc[ids, ["time", "event"]].dropna()
        if known.empty:
            raise ValueError(f"fold {fold}: no training patient has time and event in the sample sheet")
        return known["time"].to_numpy(float), known["event"].to_numpy(float)


def load_cohort_tables(sheet: Path | str, splits: Path | str) -> CohortTables:
    """Read the canonical sample sheet (one row per slide) and the split table.

    Raises ValueError when a patient's slides disagree on an outcome, or the split table lacks
    its columns: both would make every metric silently wrong.
    """
    df = read_canonical_sheet(sheet)
    per = df.groupby("patient_id", sort=True)
    for col in ("label", "time", "event"):
        n = per[col].nunique(dropna=False)
        if (n > 1).any():
            raise ValueError(f"{sheet}: slides of patients {n.index[n > 1][:5].tolist()} disagree on {col!r}")
    patients = per[["site", "label", "time", "event"]].first()
    patients["n_slides"] = per.size()

    sp = pd.read_csv(splits, dtype={"patient_id": str})
    missing = {"fold", "patient_id", "role"} - set(sp.columns)
    if missing:
        raise ValueError(f"{splits}: split table lacks columns {sorted(missing)}")
    sp["fold"] = sp["fold"].astype(int)
    unknown = sorted(set(sp["patient_id"]) - set(patients.index))
    if unknown:
        raise ValueError(f"{splits}: patients {unknown[:5]} are not in the sample sheet {sheet}")
    return CohortTables(patients=patients, splits=sp, sheet=df)
