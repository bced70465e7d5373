"""One fold of the penalised Cox baseline (``coxnet``) as a DAG model: the same fold files as the others.

Why its own runner: CoxNet is not a torch model (no epochs, no checkpoint to rebuild a network
from), but the report scores every model from the same files, so this writes what the trainer
writes for a fold -- ``predictions.parquet`` (test), ``inner_predictions.parquet`` (train/val),
``train_log.csv`` (the alpha path with its inner-CV C), ``metrics.json`` (last) -- plus
``coxnet.json``: coefficients, genes and the chosen alpha.

The fold is prepared exactly as the SNN's (``prepare_fold`` with the SNN's protocol): the same
roles, the same patients left out (no RNA, no outcome), the same training-only survival bins.
The features are the SNN's genes (T ∪ E, each once) z-scored on the training patients
(``duopath.models.coxnet.rna_features``). ``surv_k`` is the Breslow survival at the end of
bin ``k`` (the last, open bin: at the last training event time, where the curve goes flat), so
the IBS and calibration code reads it as any model's curve.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from duopath.config import TeacherConfig
from duopath.io import plain_json, write_json, write_table
from duopath.layout import FoldPaths
from duopath.models.coxnet import INNER_FOLDS, CoxnetFit, fit_coxnet, rna_features
from duopath.training.data import DataError
from duopath.training.fold_data import CohortInputs, FoldData, load_inputs, prepare_fold
from duopath.training.selection import score_predictions
from duopath.training.splits import ROLES
from duopath.training.variants import variant_config

log = logging.getLogger(__name__)

MODEL = "coxnet"
MODEL_FILE = "coxnet.json"


def _frame(fit: CoxnetFit, x: np.ndarray, samples, data: FoldData) -> pd.DataFrame:
    """The trainer's prediction-frame schema (``trainer.prediction_frame``) for a CoxNet fit."""
    assert data.time_bins is not None
    ends = np.asarray(data.time_bins[1:], dtype=float)
    surv = fit.survival(x, ends)  # inf (open last bin) is clipped to the flat tail
    frame = pd.DataFrame({
        "patient_id": [s.patient_id for s in samples],
        "fold": data.fold,
        "risk": fit.risk(x),
        "time": [s.time for s in samples],
        "event": [s.event for s in samples],
        "label": [s.label for s in samples],
    })
    for k in range(surv.shape[1]):
        frame[f"surv_{k}"] = surv[:, k].astype(np.float64)
    return frame


def run_coxnet_folds(
    *,
    sheet: Path | str,
    splits: Path | str,
    rna: Path | str,
    targets: Sequence[tuple[int, Path | str]],
    cfg: TeacherConfig,
    seed: int,
    cohort: str = "",
    task: str = "survival",
) -> dict[int, dict]:
    """Fit CoxNet on each ``(fold, out_dir)`` of ``targets``, the cohort's inputs read once (as
    the torch models' jobs: ``fold_data.load_inputs`` without slides); each fold's files as
    :func:`run_coxnet_fold` writes them, the same as a job of that fold alone. Returns each
    fold's metrics."""
    if task != "survival":
        raise DataError(f"coxnet is a survival model; task {task!r} has no CoxNet baseline")
    inputs = load_inputs(sheet=sheet, splits=splits, rna=rna, features_dir="", magnifications=(),
                         cache_bytes=0, slides=False)
    return {fold: run_coxnet_fold(inputs, fold=fold, cfg=cfg, seed=seed, out_dir=out_dir,
                                  cohort=cohort, task=task)
            for fold, out_dir in targets}


def run_coxnet_fold(
    inputs: CohortInputs,
    *,
    fold: int,
    cfg: TeacherConfig,
    seed: int,
    out_dir: Path | str,
    cohort: str = "",
    task: str = "survival",
) -> dict:
    """Fit CoxNet on one fold's training patients and write its fold files; returns metrics."""
    if task != "survival":
        raise DataError(f"coxnet is a survival model; task {task!r} has no CoxNet baseline")
    adata = inputs.adata
    protocol = variant_config(cfg, "snn", list(cfg.magnifications or ["none"]))
    data = prepare_fold(inputs.sheet, inputs.splits, fold, inputs.store, adata, task=task, cfg=protocol)
    roles = {r: [s.patient_id for s in data.samples[r]] for r in ROLES}
    everyone = [p for r in ROLES for p in roles[r]]
    genes, x_all = rna_features(adata, roles["train"], roles["val"] + roles["test"], everyone)
    x = {r: x_all[[everyone.index(p) for p in roles[r]]] for r in ROLES}
    train = data.samples["train"]
    # a small cohort's training fold may hold fewer events than INNER_FOLDS: fewer inner folds
    # (each still needs an event to score), never fewer than 2
    inner_folds = min(INNER_FOLDS, int(sum(s.event for s in train)))
    try:
        fit = fit_coxnet(x["train"], [s.time for s in train], [s.event for s in train], genes=genes,
                         seed=seed + fold, inner_folds=max(inner_folds, 2))
    except ValueError as err:
        raise DataError(f"fold {fold}: {err}") from err
    frames = {r: _frame(fit, x[r], data.samples[r], data) for r in ROLES}
    scores = {r: score_predictions(task, frames[r], train=train, bin_edges=data.time_bins)
              for r in ("val", "test")}

    paths = FoldPaths(Path(out_dir))
    write_json(paths.out_dir / MODEL_FILE, {
        "model": MODEL, "fold": fold, "task": task, "seed": seed, **fit.summary(),
        "genes": genes, "coef": fit.coef.tolist(),
        "time_bins": [float(e) if np.isfinite(e) else None for e in data.time_bins],
    })
    write_table(paths.train_log, pd.DataFrame({
        "alpha": fit.alphas, "inner_cv_c": fit.inner_c, "selected": fit.alphas == fit.alpha}))
    inner = pd.concat([frames["train"].assign(role="train"), frames["val"].assign(role="val")],
                      ignore_index=True)
    write_table(paths.inner_predictions, inner.assign(model=MODEL))
    write_table(paths.predictions, frames["test"].assign(model=MODEL))
    metrics = {
        "cohort": cohort, "model": MODEL, "fold": fold, "task": task, "seed": seed,
        "test": scores["test"], "val_selected": scores["val"],
        "best_epoch": None, "epochs_run": 0, "stopped_early": False,
        "selection": "inner-cv c_harrell (alpha)",
        "n_patients": {r: len(v) for r, v in roles.items()},
        "excluded": data.excluded,
        "time_bins": [float(e) if np.isfinite(e) else None for e in data.time_bins],
        "class_names": None, "magnifications": [], "encoder": None,
        "coxnet": fit.summary(),
    }
    write_json(paths.metrics, plain_json(metrics))
    log.info("coxnet fold %d: test %s", fold, scores["test"])
    return metrics

