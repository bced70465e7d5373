"""Stage II: train the histology-only student of one fold, with or without SKD.

Two models per fold (DESIGN.md "Student", "SKD"):

* ``student`` — Σ_m task(student_m) + α·KL(student_m ‖ teacher_m, T) ·T² + β·MSE(student
  [X_S^T ; X_S^E], teacher [X_R^T ; X_R^E]) (:func:`duopath.training.losses.skd_loss`), from the
  frozen teacher of the SAME fold and task, loaded from its checkpoint;
* ``student_nokd`` — the same architecture and protocol, task loss only.

Why both read the teacher checkpoint: the fold's patients, survival bins / class names and the
task-loss settings are the teacher's, so the two students and the teacher are scored on exactly
the same test patients (a patient the teacher could not see — no RNA under ``missing_rna:
exclude`` — is left out of both students too, logged, so the comparison stays paired). The
checkpoint's gene lists are checked against the re-prepared fold, so a changed RNA file fails
loudly instead of feeding the teacher shuffled genes.

Teacher targets: the teacher runs under ``no_grad`` in eval mode on the SAME subsampled tiles
as the student at every step (with ``max_tiles_train`` the bag differs per step, so a per-epoch
cache would distil from tiles the student never saw). With ``max_tiles_train: null`` the bags
are constant and the targets are cached per patient on first use (the teacher is frozen).

Everything else is the teacher's protocol, imported from :mod:`duopath.training.trainer`:
AdamW, warm-up + cosine by epoch, clipping, selection on the validation split only, the test
fold predicted once with the selected weights, seeds from ``(seed, fold)``.

The checkpoint carries what ``duopath predict`` needs for a slide alone and no gene
information: encoder name + weights id, tile mpp/px per magnification, student kwargs, class
names or time bins, the risk threshold (median of the training patients' risks), versions.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

import duopath
from duopath.config import StudentConfig, TeacherConfig
from duopath.io import atomic_path, write_json, write_table
from duopath.models import ModelOutput, build_model
from duopath.training.data import BagStore, Batch, DataError, Sample, _open_group
from duopath.training.losses import skd_loss
from duopath.training.predict_fold import (
    FoldPaths,
    _json_ready,
    _jsonable,
    git_commit,
    load_checkpoint_model,
    load_teacher,
)
from duopath.training.trainer import (
    FoldData,
    FoldResult,
    Step,
    fit_epochs,
    fold_seeds,
    prepare_fold,
    resolve_device,
    task_loss,
)

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "duopath-student/1"
STUDENT_MODELS: tuple[str, ...] = ("student", "student_nokd")
STUDENT_ARCH = "student"


def student_kwargs(cfg: StudentConfig, data: FoldData, feature_dim: int, mags: Sequence[str],
                   teacher_dim: int) -> dict:
    """Keyword arguments of ``duopath.models.Student`` (plain values: stored in the checkpoint)."""
    dim = teacher_dim if cfg.dim is None else int(cfg.dim)
    if dim != teacher_dim:
        raise ValueError(f"student.dim={dim} differs from the teacher's dim={teacher_dim}: SKD's MSE "
                         "compares the embeddings (set student.dim: null)")
    return {
        "feature_dim": int(feature_dim),
        "n_classes": data.n_classes,
        "task": data.task,
        "magnifications": list(mags),
        "dim": dim,
        **{k: getattr(cfg, k) for k in (
            "n_heads", "tile_attention", "n_neighbours", "n_prototypes", "dpc_k", "dropout",
            "omega_clamp", "gating", "gating_temperature")},
    }


class _TeacherTargets:
    """The frozen teacher's logits and joint embeddings for a batch (see module docstring)."""

    def __init__(self, teacher: nn.Module, mags: Sequence[str], cache: bool) -> None:
        self.teacher, self.mags, self.cache = teacher, list(mags), cache
        self._cache: dict[str, tuple[dict[str, Tensor], dict[str, Tensor]]] = {}

    @torch.no_grad()
    def _run(self, batch) -> ModelOutput:
        self.teacher.eval()
        return self.teacher(batch.feats, batch.mask, batch.coords, batch.genes_T, batch.genes_E)

    def __call__(self, chunk: Sequence[Sample], batch) -> ModelOutput:
        ids = [s.patient_id for s in chunk]
        if not self.cache or any(p not in self._cache for p in ids):
            out = self._run(batch)
            if not self.cache:
                return out
            for i, p in enumerate(ids):
                self._cache[p] = (out.logits[i], out.gate_weights[i],
                                  {m: out.logits_by_mag[m][i] for m in self.mags},
                                  {m: {s: out.embeddings[m][s][i] for s in out.embeddings[m]}
                                   for m in self.mags})
        hit = [self._cache[p] for p in ids]
        # Only what SKD reads is cached (logits and embeddings); attention maps are not kept.
        return ModelOutput(
            logits=torch.stack([h[0] for h in hit]),
            gate_weights=torch.stack([h[1] for h in hit]),
            logits_by_mag={m: torch.stack([h[2][m] for h in hit]) for m in self.mags},
            embeddings={m: {s: torch.stack([h[3][m][s] for h in hit]) for s in hit[0][3][m]}
                        for m in self.mags},
            attention={}, confidence={})


def train_student_fold(
    data: FoldData,
    store: BagStore,
    cfg: StudentConfig,
    *,
    teacher: nn.Module | None,
    teacher_cfg: TeacherConfig,
    mags: Sequence[str],
    teacher_dim: int,
    seed: int,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> FoldResult:
    """Train on ``train``, select on ``val``, predict ``test`` once; ``teacher=None`` = no KD.

    ``teacher_cfg`` supplies the task-loss settings (survival α, Cox weight) so the students
    optimise the teacher's task objective.
    """
    device = torch.device(device)
    mags = list(mags)
    torch_seed, seq = fold_seeds(seed, data.fold)
    torch.manual_seed(torch_seed)
    kwargs = student_kwargs(cfg, data, store.feature_dim, mags, teacher_dim)
    model = build_model(STUDENT_ARCH, kwargs).to(device)
    targets = None
    if teacher is not None:
        teacher.to(device).eval().requires_grad_(False)
        targets = _TeacherTargets(teacher, mags, cache=cfg.max_tiles_train is None)

    def step(chunk: list[Sample], batch: Batch) -> Step:
        out = model(batch.feats, batch.mask, batch.coords)

        def task_fn(logits: Tensor) -> Tensor:
            return task_loss(logits, batch.targets, batch.events, batch.times, data, teacher_cfg)

        if targets is None:
            task = torch.stack([task_fn(out.logits_by_mag[m]) for m in mags]).sum()
            return Step(task, {"train_task_loss": task, "train_kl_loss": 0.0, "train_mse_loss": 0.0})
        parts = skd_loss(out, targets(chunk, batch), task_fn, task=data.task, alpha=cfg.alpha,
                         beta=cfg.beta, temperature=cfg.temperature)
        return Step(parts.total, {"train_task_loss": parts.task, "train_kl_loss": cfg.alpha * parts.kl,
                                  "train_mse_loss": cfg.beta * parts.mse})

    return fit_epochs(model, data, store, mags, optim=cfg.optim, max_tiles=cfg.max_tiles_train, seq=seq,
                      step=step, genes=False, loss_cfg=teacher_cfg, kwargs=kwargs,
                      desc=f"student fold {data.fold}", progress=progress, device=device)


def tile_settings(store: BagStore, mags: Sequence[str]) -> dict[str, dict[str, float]]:
    """Tile mpp / px / µm per magnification from the feature stores (all slides must agree).

    Why from the stores and not the config: predict must reproduce what the features were
    computed with, and the stores are the record of that.
    """
    found: dict[str, dict[str, float]] = {}
    for paths in store.slides.values():
        for path in paths:
            root = _open_group(Path(path))
            for m in mags:
                a = root[m].attrs
                cur = {"mpp": float(a["mpp"]), "tile_px": int(a["tile_px"]), "size_um": float(a["size_um"])}
                if m in found and found[m] != cur:
                    raise DataError(f"{path}/{m}: tiling {cur} differs from other slides' {found[m]}")
                found[m] = cur
    return found


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def risk_threshold(inner: pd.DataFrame) -> float | None:
    """Median risk of the TRAINING patients (survival), the cut between low and high risk."""
    risks = inner.loc[inner["role"] == "train", "risk"].to_numpy(float)
    risks = risks[np.isfinite(risks)]
    return float(np.median(risks)) if len(risks) else None


def checkpoint_payload(
    model: nn.Module,
    kwargs: dict,
    *,
    variant: str,
    task: str,
    time_bins: list[float] | None,
    class_names: list[str] | None,
    risk_threshold: float | None,
    encoder: str,
    weights_id: str,
    tiling: dict[str, dict[str, float]],
    settings: dict,
    teacher: dict | None,
    fold: int,
    seed: int,
    best_epoch: int,
) -> dict:
    """The student checkpoint: what ``duopath predict`` needs for a slide alone, and no genes."""
    return {
        "format": CHECKPOINT_FORMAT,
        "model_name": STUDENT_ARCH,
        "variant": variant,
        "model_kwargs": kwargs,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "task": task,
        "time_bins": time_bins,
        "class_names": class_names,
        "risk_threshold": risk_threshold,
        "feature_dim": int(kwargs["feature_dim"]),
        "encoder": encoder,
        "weights_id": weights_id,
        "magnifications": list(kwargs["magnifications"]),
        "tiling": tiling,
        "settings": settings,
        "teacher": teacher,
        "fold": fold,
        "seed": seed,
        "best_epoch": best_epoch,
        "duopath_version": duopath.__version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
    }


def load_student(path: Path | str, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a trained student from ``checkpoint.pt``: (model in eval mode, checkpoint dict)."""
    return load_checkpoint_model(path, CHECKPOINT_FORMAT, "student", device)


def run_student_fold(
    *,
    sheet: Path | str,
    splits: Path | str,
    rna: Path | str,
    features_dir: Path | str,
    teacher_checkpoint: Path | str,
    fold: int,
    model: str,
    cfg: StudentConfig,
    task: str,
    seed: int,
    out_dir: Path | str,
    cohort: str = "",
    progress: bool = True,
) -> dict:
    """Train ``student`` or ``student_nokd`` on one fold and write the five fold outputs."""
    import anndata as ad

    if model not in STUDENT_MODELS:
        raise ValueError(f"model must be one of {STUDENT_MODELS}, got {model!r}")
    teacher_checkpoint = Path(teacher_checkpoint)
    if not teacher_checkpoint.exists():
        raise DataError(f"teacher checkpoint {teacher_checkpoint} does not exist")
    teacher_sha = _sha256(teacher_checkpoint)
    teacher, tck = load_teacher(teacher_checkpoint)
    if int(tck["fold"]) != int(fold) or tck["task"] != task:
        raise DataError(f"{teacher_checkpoint}: teacher of fold {tck['fold']} / {tck['task']}, "
                        f"the student needs fold {fold} / {task}")
    teacher_cfg = TeacherConfig.model_validate(tck["settings"])
    mags = list(tck["magnifications"])
    sheet_df = pd.read_csv(sheet, dtype={"patient_id": str, "slide_id": str, "label": str},
                           keep_default_na=False, na_values={"time": [""], "event": [""]})
    splits_df = pd.read_csv(splits, dtype={"patient_id": str})
    adata = ad.read_h5ad(rna)
    slides_by_patient = {str(p): list(g["slide_id"]) for p, g in sheet_df.groupby("patient_id", sort=True)}
    store = BagStore(slides_by_patient, features_dir, mags, cache_bytes=cfg.feature_cache_gb * 1e9)
    if (store.encoder, store.weights_id) != (tck["encoder"], tck["weights_id"]):
        raise DataError(f"features under {features_dir} are {store.encoder}/{store.weights_id}, the "
                        f"teacher was trained on {tck['encoder']}/{tck['weights_id']}")
    data = prepare_fold(sheet_df, splits_df, fold, store, adata, task=task, cfg=teacher_cfg)
    if (data.genes.genes_T, data.genes.genes_E) != (tck["genes_T"], tck["genes_E"]):
        raise DataError(f"{teacher_checkpoint}: its gene lists differ from those prepared from {rna} "
                        "(RNA changed since the teacher was trained?)")
    bins = None if data.time_bins is None else [float(x) for x in data.time_bins]
    if bins != tck["time_bins"] or data.class_names != tck["class_names"]:
        raise DataError(f"{teacher_checkpoint}: time bins / class names differ from the fold's")
    device = resolve_device(cfg.device)
    log.info("%s fold %d on %s (teacher %s, sha256 %s)", model, fold, device, teacher_checkpoint,
             teacher_sha[:12])
    result = train_student_fold(
        data, store, cfg, teacher=teacher if model == "student" else None, teacher_cfg=teacher_cfg,
        mags=mags, teacher_dim=int(tck["model_kwargs"]["dim"]), seed=seed, device=device,
        progress=progress)
    threshold = risk_threshold(result.inner_predictions)
    payload = checkpoint_payload(
        result.model, result.model_kwargs, variant=model, task=task, time_bins=bins,
        class_names=data.class_names, risk_threshold=threshold, encoder=store.encoder,
        weights_id=store.weights_id, tiling=tile_settings(store, mags), settings=cfg.model_dump(mode="json"),
        teacher={"checkpoint": str(teacher_checkpoint), "sha256": teacher_sha,
                 "distilled": model == "student"},
        fold=fold, seed=seed, best_epoch=result.best_epoch)
    paths = FoldPaths(Path(out_dir))
    with atomic_path(paths.checkpoint) as tmp:
        torch.save(payload, tmp)
    write_table(paths.train_log, result.log)
    write_table(paths.inner_predictions, result.inner_predictions.assign(model=model))
    write_table(paths.predictions, result.predictions.assign(model=model))
    metrics = {
        "cohort": cohort, "model": model, "fold": fold, "task": task, "seed": seed,
        "test": result.test_scores, "val_selected": result.val_scores,
        "best_epoch": result.best_epoch, "epochs_run": len(result.log),
        "stopped_early": result.stopped_early, "selection": cfg.optim.select_on,
        "n_patients": {r: len(v) for r, v in data.samples.items()}, "excluded": data.excluded,
        "time_bins": bins, "class_names": data.class_names, "risk_threshold": threshold,
        "magnifications": mags, "encoder": store.encoder, "teacher_sha256": teacher_sha,
    }
    import json

    write_json(paths.metrics, _json_ready(json.loads(json.dumps(metrics, default=_jsonable))))
    return metrics
