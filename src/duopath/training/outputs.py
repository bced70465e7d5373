"""The five outputs of one trained fold, written the same way for every model.

``results/{cohort}/{task}/{model}/fold{k}/`` (``layout.FoldPaths``), each written atomically:

* the checkpoint (:mod:`duopath.checkpoints`: safetensors + JSON metadata, no pickle) --
  everything needed to rebuild and apply the model without the training run: model name and
  kwargs, weights, task, time-bin edges or class names, feature dim, encoder name and weights
  id, magnifications, the settings, seed, fold, code version (+ git commit); a teacher or
  baseline adds the RNA gene lists and scaler (fit on the fold's training patients), a student
  its tile settings, risk threshold and the teacher it was distilled from (and no genes);
* ``train_log.csv`` -- per epoch: lr, train losses, validation loss and metric, selected epoch;
* ``inner_predictions.parquet`` -- the selected model on the train and val patients (``role``
  column): for thresholds fit on training risks (Kaplan-Meier groups), never for scoring;
* ``predictions.parquet`` -- the test patients (schema: ``loop.prediction_frame``);
* ``metrics.json`` -- test scores, the validation scores of the selected epoch, counts,
  exclusions, the expert weighting ``gating: validation`` chose (``gate_fit``, also in the
  checkpoint's metadata; None for the other gates); written last, so its presence means the fold is complete.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import duopath
from duopath.checkpoints import save_checkpoint
from duopath.io import plain_json, write_json, write_table
from duopath.layout import FoldPaths
from duopath.training.data import SLIDE_GAP_TILES, BagStore, DataError, open_zarr_group
from duopath.training.fold_data import FoldData
from duopath.training.loop import FoldResult


@functools.cache
def git_commit() -> str | None:
    """The source tree's commit, when duopath runs from a git checkout (else None)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(duopath.__file__).parent,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def sha256(path: Path | str) -> str:
    """Hex SHA-256 of a file (the teacher a student was distilled from is recorded by it)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def time_bins(data: FoldData) -> list[float] | None:
    """The fold's survival bin edges as plain floats (None for classification)."""
    return None if data.time_bins is None else [float(x) for x in data.time_bins]


def tile_settings(store: BagStore, mags: Sequence[str]) -> dict[str, dict[str, float]]:
    """Tile mpp / px / µm per magnification from the feature stores (all slides must agree).

    Why from the stores and not the config: predict must reproduce what the features were
    computed with, and the stores are the record of that.
    """
    found: dict[str, dict[str, float]] = {}
    for paths in store.slides.values():
        for path in paths:
            root = open_zarr_group(Path(path))
            for m in mags:
                a = root[m].attrs
                cur = {"mpp": float(a["mpp"]), "tile_px": int(a["tile_px"]), "size_um": float(a["size_um"])}
                if m in found and found[m] != cur:
                    raise DataError(f"{path}/{m}: tiling {cur} differs from other slides' {found[m]}")
                found[m] = cur
    return found


def risk_threshold(inner: pd.DataFrame) -> float | None:
    """Median risk of the TRAINING patients (survival), the cut between low and high risk."""
    risks = inner.loc[inner["role"] == "train", "risk"].to_numpy(float)
    risks = risks[np.isfinite(risks)]
    return float(np.median(risks)) if len(risks) else None


def common_meta(result: FoldResult, data: FoldData, store: BagStore, *, model_name: str, variant: str,
                mags: Sequence[str], settings: dict, seed: int) -> dict:
    """Checkpoint metadata every model carries (module docstring)."""
    return {
        "model_name": model_name,
        "variant": variant,
        "model_kwargs": result.model_kwargs,
        "task": data.task,
        "time_bins": time_bins(data),
        "class_names": data.class_names,
        "feature_dim": store.feature_dim,
        "encoder": store.encoder,
        "weights_id": store.weights_id,
        "magnifications": list(mags),
        "settings": settings,
        "fold": data.fold,
        "seed": seed,
        "best_epoch": result.best_epoch,
        "gate_fit": result.gate_fit,
        "duopath_version": duopath.__version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
    }


def gene_meta(data: FoldData, missing_rna: str) -> dict:
    """What a teacher or baseline needs to turn a patient's RNA into its inputs."""
    g = data.genes
    return {
        "genes_T": g.genes_T,
        "genes_E": g.genes_E,
        "scaler_mean": g.mean.to_numpy(dtype=np.float64).tolist(),
        "scaler_std": g.std.to_numpy(dtype=np.float64).tolist(),
        "missing_rna": missing_rna,
        "coordinates": f"tile centres in µm; a patient's slides side by side in x, "
                       f"{SLIDE_GAP_TILES:g} coarse tiles apart (duopath.training.data)",
    }


def write_fold_outputs(
    paths: FoldPaths,
    result: FoldResult,
    data: FoldData,
    store: BagStore,
    *,
    kind: str,
    meta: dict,
    cohort: str,
    model: str,
    seed: int,
    selection: str,
    extra_metrics: dict,
) -> dict:
    """Write the five outputs (metrics.json last); returns the metrics dict."""
    save_checkpoint(paths.checkpoint, kind, result.model, meta)
    write_table(paths.train_log, result.log)
    write_table(paths.inner_predictions, result.inner_predictions.assign(model=model))
    write_table(paths.predictions, result.predictions.assign(model=model))
    metrics = {
        "cohort": cohort,
        "model": model,
        "fold": data.fold,
        "task": data.task,
        "seed": seed,
        "test": result.test_scores,
        "val_selected": result.val_scores,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.log),
        "stopped_early": result.stopped_early,
        "gate_fit": result.gate_fit,
        "selection": selection,
        "n_patients": {r: len(v) for r, v in data.samples.items()},
        "excluded": data.excluded,
        "time_bins": time_bins(data),
        "class_names": data.class_names,
        "magnifications": meta["magnifications"],
        "encoder": store.encoder,
        **extra_metrics,
    }
    write_json(paths.metrics, plain_json(metrics))
    return metrics
