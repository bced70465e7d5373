"""One fold end to end, from the pipeline's files to ``results/{cohort}/{model}/fold{k}/``.

Reads the canonical sample sheet, the split table, the RNA AnnData and the feature stores;
trains (:mod:`duopath.training.trainer`); writes, each atomically (``duopath.io``):

* ``checkpoint.pt`` — everything needed to rebuild and apply the model without the training
  run: model name and kwargs, weights, task, time-bin edges or class names, the RNA gene
  lists and scaler (mean/std, fit on the fold's training patients), feature dim, encoder name
  and weights id, magnifications, the settings, seed, fold, code version (+ git commit);
* ``train_log.csv`` — per epoch: lr, train loss (total / task / IGC), CGC share of projected
  head rows, validation loss and metric, which epoch was selected;
* ``inner_predictions.parquet`` — the selected model on the train and val patients (``role``
  column): for thresholds fit on training risks (Kaplan–Meier groups), never for scoring;
* ``predictions.parquet`` — the test patients (schema: ``trainer.prediction_frame``);
* ``metrics.json`` — test scores, the validation scores of the selected epoch, counts,
  exclusions; written last, so its presence means the fold is complete.
"""

from __future__ import annotations

import functools
import json
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import duopath
from duopath import layout
from duopath.config import BASELINE_MODELS, BaselinesConfig, TeacherConfig
from duopath.io import atomic_path, write_json, write_table
from duopath.models import build_model
from duopath.training.data import SLIDE_GAP_TILES, BagStore, DataError
from duopath.training.trainer import (
    FoldData,
    FoldResult,
    prepare_fold,
    resolve_device,
    train_fold,
)
from duopath.training.variants import BASE_MODEL, baseline_kwargs, registry_name, variant_config

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "duopath-teacher/1"
BASELINE_FORMAT = "duopath-baseline/1"
"""Baselines share the teacher's checkpoint layout under their own format, so a baseline is
never loaded where a teacher is expected (the student distils from teachers only)."""


@dataclass(frozen=True)
class FoldPaths:
    """The files of one fold's result directory (``layout.RESULTS_DIR``)."""

    out_dir: Path

    @property
    def checkpoint(self) -> Path:
        return self.out_dir / Path(layout.CHECKPOINT).name

    @property
    def predictions(self) -> Path:
        return self.out_dir / Path(layout.PREDICTIONS).name

    @property
    def inner_predictions(self) -> Path:
        return self.out_dir / Path(layout.INNER_PREDICTIONS).name

    @property
    def metrics(self) -> Path:
        return self.out_dir / Path(layout.METRICS).name

    @property
    def train_log(self) -> Path:
        return self.out_dir / Path(layout.TRAIN_LOG).name


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


def checkpoint_payload(
    result: FoldResult, data: FoldData, store: BagStore, cfg: TeacherConfig, *, model: str, seed: int
) -> dict:
    """The checkpoint dict (module docstring); tensors on CPU."""
    g = data.genes
    return {
        "format": CHECKPOINT_FORMAT if registry_name(model) == BASE_MODEL else BASELINE_FORMAT,
        "model_name": registry_name(model),
        "variant": model,
        "model_kwargs": result.model_kwargs,
        "state_dict": {k: v.detach().cpu() for k, v in result.model.state_dict().items()},
        "task": data.task,
        "time_bins": None if data.time_bins is None else [float(x) for x in data.time_bins],
        "class_names": data.class_names,
        "genes_T": g.genes_T,
        "genes_E": g.genes_E,
        "scaler_mean": g.mean.to_numpy(dtype=np.float64).tolist(),
        "scaler_std": g.std.to_numpy(dtype=np.float64).tolist(),
        "missing_rna": cfg.missing_rna,
        "feature_dim": store.feature_dim,
        "encoder": store.encoder,
        "weights_id": store.weights_id,
        "magnifications": list(cfg.magnifications or []),
        "coordinates": f"tile centres in µm; a patient's slides side by side in x, "
                       f"{SLIDE_GAP_TILES:g} coarse tiles apart (duopath.training.data)",
        "settings": cfg.model_dump(mode="json"),
        "fold": data.fold,
        "seed": seed,
        "best_epoch": result.best_epoch,
        "duopath_version": duopath.__version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
    }


def load_checkpoint_model(
    path: Path | str, expected_format: str, kind: str, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, dict]:
    """Rebuild a model from a duopath ``checkpoint.pt`` of format ``expected_format``.

    Returns (model in eval mode, checkpoint dict); a file of another format is refused naming
    ``kind`` ("teacher", "student"), so a student is never loaded where a teacher is expected.
    """
    ckpt = torch.load(Path(path), map_location=device, weights_only=False)
    if ckpt.get("format") != expected_format:
        raise ValueError(f"{path}: not a duopath {kind} checkpoint (format {ckpt.get('format')!r})")
    model = build_model(ckpt["model_name"], ckpt["model_kwargs"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt


def load_teacher(path: Path | str, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild a trained teacher from ``checkpoint.pt``: (model in eval mode, checkpoint dict)."""
    return load_checkpoint_model(path, CHECKPOINT_FORMAT, "teacher", device)


def write_fold(
    result: FoldResult,
    data: FoldData,
    store: BagStore,
    cfg: TeacherConfig,
    paths: FoldPaths,
    *,
    cohort: str,
    model: str,
    seed: int,
) -> dict:
    """Write the five outputs of one fold (metrics.json last); returns the metrics dict."""
    payload = checkpoint_payload(result, data, store, cfg, model=model, seed=seed)
    with atomic_path(paths.checkpoint) as tmp:
        torch.save(payload, tmp)
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
        "selection": cfg.optim.select_on,
        "n_patients": {r: len(v) for r, v in data.samples.items()},
        "excluded": data.excluded,
        "rna_imputed": data.genes.imputed,
        "time_bins": payload["time_bins"],
        "class_names": data.class_names,
        "magnifications": payload["magnifications"],
        "encoder": store.encoder,
    }
    write_json(paths.metrics, _json_ready(json.loads(json.dumps(metrics, default=_jsonable))))
    return metrics


def _jsonable(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _json_ready(value: object) -> object:
    """NaN → None (JSON has no NaN; the reason is kept under "undefined")."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


def run_fold(
    *,
    sheet: Path | str,
    splits: Path | str,
    rna: Path | str | None,
    features_dir: Path | str,
    fold: int,
    model: str,
    cfg: TeacherConfig,
    baselines: BaselinesConfig | None = None,
    tiled_magnifications: list[str],
    task: str,
    seed: int,
    out_dir: Path | str,
    cohort: str = "",
    progress: bool = True,
) -> dict:
    """Train model ``model`` on one fold and write its outputs.

    ``model``: the teacher, an ablation (``teacher_<name>``) or a baseline, whose architecture
    comes from ``baselines`` and whose training protocol is ``cfg`` (the teacher's). ``rna``
    None: a cohort without RNA (slide-only baselines only).
    """
    import anndata as ad

    variant = variant_config(cfg, model, tiled_magnifications)
    sheet_df = pd.read_csv(sheet, dtype={"patient_id": str, "slide_id": str, "label": str},
                           keep_default_na=False, na_values={"time": [""], "event": [""]})
    splits_df = pd.read_csv(splits, dtype={"patient_id": str})
    arch = None
    if registry_name(model) != BASE_MODEL:
        arch = baseline_kwargs(baselines or BaselinesConfig(), cfg)
    adata = None
    if rna is not None:
        if not Path(rna).exists():
            raise DataError(f"RNA file {rna} does not exist (the {model} model needs the rna stage)")
        adata = ad.read_h5ad(rna)
    elif registry_name(model) == BASE_MODEL or BASELINE_MODELS[model] != "wsi":
        raise DataError(f"{model} needs RNA (--rna): only slide-only baselines run without it")
    slides_by_patient = {str(p): list(g["slide_id"]) for p, g in sheet_df.groupby("patient_id", sort=True)}
    store = BagStore(slides_by_patient, features_dir, variant.magnifications,
                     cache_bytes=variant.feature_cache_gb * 1e9)
    data = prepare_fold(sheet_df, splits_df, fold, store, adata, task=task, cfg=variant)
    device = resolve_device(variant.device)
    log.info("%s fold %d on %s: %s", model, fold, device, variant.model_dump_json())
    result = train_fold(data, store, variant, seed=seed, device=device, progress=progress,
                        model_name=model, arch=arch)
    return write_fold(result, data, store, variant, FoldPaths(Path(out_dir)), cohort=cohort,
                      model=model, seed=seed)
