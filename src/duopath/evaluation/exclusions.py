"""Who each model was evaluated on, and every test patient it was not, with the reason.

Why a table of its own: the splits put every patient of the sheet in one test fold, but a model
can only be scored on the patients it could see (a teacher needs RNA under ``missing_rna:
exclude``, every model needs a usable slide, survival needs follow-up). A report that states
"6 test patients per fold" while its metrics rest on 28 of 30 patients hides two patients; this
module names them. The reason is the trainer's own (``metrics.json`` → ``excluded``), else what
the sheet and the WSI summary say, else that the fold is missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from duopath.evaluation.cohort_tables import CohortTables
from duopath.evaluation.collect import FoldRun

EXCLUSION_COLUMNS = ["model", "fold", "patient_id", "reason"]


def _fallback_reason(pid: str, tables: CohortTables, usable_slides: set[str] | None, task: str) -> str:
    p = tables.patients.loc[pid] if pid in tables.patients.index else None
    if usable_slides is not None:
        slides = set(tables.sheet.loc[tables.sheet["patient_id"] == pid, "slide_id"])
        if not slides & usable_slides:
            return "no usable slide (see the WSI summary)"
    if p is not None and task == "survival" and not (np.isfinite(p["time"]) and np.isfinite(p["event"])):
        return "no follow-up (time / event missing)"
    if p is not None and task == "classification" and p["label"] == "":
        return "no class label"
    return "no prediction (the trainer recorded no reason)"


def exclusions(runs: Mapping[str, Sequence[FoldRun]], tables: CohortTables, task: str,
               wsi_summary: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (model, fold, test patient without a prediction): ``EXCLUSION_COLUMNS``."""
    usable = None
    if wsi_summary is not None and "status" in wsi_summary:
        usable = set(wsi_summary.loc[wsi_summary["status"].astype(str) == "ok", "slide_id"].astype(str))
    rows = []
    for model, folds in runs.items():
        for run in folds:
            test = [str(p) for p in tables.role(run.fold, "test")]
            if run.predictions is None:
                why = f"fold not run: {run.missing or 'no predictions'}"
                rows += [(model, run.fold, p, why) for p in test]
                continue
            have = set(run.predictions["patient_id"].astype(str))
            recorded = {str(k): str(v) for k, v in (run.info.get("excluded") or {}).items()}
            for p in test:
                if p not in have:
                    why = recorded.get(p) or _fallback_reason(p, tables, usable, task)
                    rows.append((model, run.fold, p, why))
    return pd.DataFrame(rows, columns=EXCLUSION_COLUMNS)


def evaluated_counts(runs: Mapping[str, Sequence[FoldRun]], tables: CohortTables
                     ) -> dict[str, tuple[int, int]]:
    """model → (test patients with a prediction, test patients in the splits) over all folds."""
    out = {}
    for model, folds in runs.items():
        n_test = sum(len(tables.role(r.fold, "test")) for r in folds)
        n_pred = sum(0 if r.predictions is None else int(r.predictions["patient_id"].nunique())
                     for r in folds)
        out[model] = (n_pred, n_test)
    return out
