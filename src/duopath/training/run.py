"""One fold of one model, end to end: the single runner of teacher, ablations, baselines and students.

``model_spec`` says what a model name trains (its kind, settings, magnifications);
``fold_data.load_inputs`` reads what every fold of a cohort shares; :func:`run_fold` trains one
fold and writes its five outputs (:mod:`duopath.training.outputs`). :func:`run_folds_files` is
what the CLI (and so the rules) run: it loads the inputs ONCE and trains the requested folds of
one (cohort, task, model) in turn, each into its own result folder. Why: starting Python,
importing torch and filling the feature cache cost a demo training job more CPU time than the
training itself (bench/results/demo_profile.json), and a fold's result does not depend on which
other folds ran in the same process (every fold seeds its own RNGs, ``loop.fold_seeds``), so one
fold alone (``--fold k``) reproduces it exactly. :func:`run_fold_files` is the one-fold form.

Students read the teacher checkpoint of the SAME fold and task: the fold's split, survival bins /
class names and task-loss settings are the teacher's. A student reads slides only, so it is
scored on every validation and test patient with a usable slide -- RNA or not -- and every
student variant on the same ones (paired with each other and with the slide-only baselines; with
the teacher on the patients both have, which the report's patients-per-model table states).
Training patients without RNA take the task loss only, or are left out
(``student.slide_only_patients``; ``fold_data.prepare_fold``). The checkpoint's gene lists are
checked against the re-prepared fold, so a changed RNA file fails loudly instead of feeding the
teacher shuffled genes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from duopath.checkpoints import load_model
from duopath.config import BASELINE_MODELS, BaselinesConfig, StudentConfig, TeacherConfig
from duopath.devices import resolve_device
from duopath.inference.reference import training_reference
from duopath.layout import FoldPaths
from duopath.modalities import RNA, SLIDE, model_inputs
from duopath.models import build_model
from duopath.training.architectures import STUDENT_ARCH, baseline_arch, student_arch, teacher_arch
from duopath.training.data import BagStore, DataError
from duopath.training.fold_data import CohortInputs, FoldData, load_inputs, prepare_fold
from duopath.training.loop import FoldResult, fit_epochs, fold_seeds
from duopath.training.objectives import TeacherTargets, student_step, teacher_step
from duopath.training.outputs import (
    common_meta,
    gene_meta,
    risk_threshold,
    sha256,
    tile_settings,
    time_bins,
    write_fold_outputs,
)
from duopath.training.variants import (
    STUDENT_VARIANTS,
    distils,
    model_kind,
    registry_name,
    student_variant_config,
    variant_config,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """What a trained model name means: its kind, settings and magnifications (coarse to fine).

    ``teacher``: the resolved teacher settings (``variants.variant_config``) of a teacher,
    ablation or baseline -- their protocol and task loss; ``baselines``: a baseline's section
    (its architecture, ``architectures.baseline_arch``); ``student``: a student's settings (its
    task loss is its fold teacher's, from the checkpoint).
    """

    model: str
    kind: str
    magnifications: tuple[str, ...]
    teacher: TeacherConfig | None = None
    baselines: BaselinesConfig | None = None
    student: StudentConfig | None = None

    @property
    def settings(self) -> TeacherConfig | StudentConfig:
        out = self.student if self.kind == "student" else self.teacher
        assert out is not None
        return out

    @property
    def needs_rna(self) -> bool:
        """Teachers, students (their teacher's targets) and RNA baselines need the RNA file."""
        return self.kind != "baseline" or BASELINE_MODELS[self.model] != "wsi"


def model_spec(
    model: str,
    *,
    teacher: TeacherConfig | None = None,
    baselines: BaselinesConfig | None = None,
    student: StudentConfig | None = None,
    tiled_magnifications: Sequence[str] = (),
    teacher_checkpoint: Path | str | None = None,
) -> ModelSpec:
    """The spec of ``model``: ``teacher`` settings for teachers, ablations and baselines (plus
    ``baselines``), ``student`` settings and any fold's ``teacher_checkpoint`` for students."""
    kind = model_kind(model)
    if kind == "student":
        if student is None or teacher_checkpoint is None:
            raise ValueError(f"{model} needs the student settings and a teacher checkpoint")
        _, meta = load_model(teacher_checkpoint, ("teacher",))
        return ModelSpec(model, kind, tuple(meta["magnifications"]),
                         student=student_variant_config(student, model))
    if teacher is None:
        raise ValueError(f"{model} needs the teacher settings")
    variant = variant_config(teacher, model, list(tiled_magnifications))
    section = (baselines or BaselinesConfig()) if kind == "baseline" else None
    return ModelSpec(model, kind, tuple(variant.magnifications or ()), teacher=variant, baselines=section)


@dataclass
class FoldTeacher:
    """A student's frozen fold teacher: the model, its checkpoint metadata and file hash."""

    model: nn.Module
    meta: dict
    path: Path
    sha256: str

    @property
    def settings(self) -> TeacherConfig:
        return TeacherConfig.model_validate(self.meta["settings"])


def load_fold_teacher(path: Path | str, inputs: CohortInputs, fold: int, task: str) -> FoldTeacher:
    """Load the teacher a student of ``fold``/``task`` distils from, refusing a mismatched one."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"teacher checkpoint {path} does not exist")
    digest = sha256(path)
    model, meta = load_model(path, ("teacher",))
    if int(meta["fold"]) != int(fold) or meta["task"] != task:
        raise DataError(f"{path}: teacher of fold {meta['fold']} / {meta['task']}, "
                        f"the student needs fold {fold} / {task}")
    store = inputs.store
    if (store.encoder, store.weights_id) != (meta["encoder"], meta["weights_id"]):
        raise DataError(f"features under {store.features_dir} are {store.encoder}/{store.weights_id}, the "
                        f"teacher was trained on {meta['encoder']}/{meta['weights_id']}")
    return FoldTeacher(model, meta, path, digest)


def check_teacher_fold(teacher: FoldTeacher, data: FoldData) -> None:
    """The fold re-prepared for a student must be the one its teacher saw (genes, bins, classes)."""
    meta = teacher.meta
    if (data.genes.genes_T, data.genes.genes_E) != (meta["genes_T"], meta["genes_E"]):
        raise DataError(f"{teacher.path}: its gene lists differ from those prepared from the RNA "
                        "file (RNA changed since the teacher was trained?)")
    if time_bins(data) != meta["time_bins"] or data.class_names != meta["class_names"]:
        raise DataError(f"{teacher.path}: time bins / class names differ from the fold's")


def train_fold(
    spec: ModelSpec,
    data: FoldData,
    store: BagStore,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    progress: bool = True,
    teacher: nn.Module | None = None,
    teacher_cfg: TeacherConfig | None = None,
    teacher_dim: int | None = None,
) -> FoldResult:
    """Train on ``train``, select on ``val``, predict ``test`` once (``loop.fit_epochs``).

    Students: ``teacher_cfg`` (the fold teacher's settings) supplies the task loss and
    ``teacher_dim`` the embedding width; ``teacher`` None trains without KD.
    """
    device = torch.device(device)
    mags = list(spec.magnifications)
    if [m for m in mags if m not in store.magnifications]:
        raise DataError(f"the bag store holds {store.magnifications}, the model needs {mags}")
    torch_seed, seq = fold_seeds(seed, data.fold)
    torch.manual_seed(torch_seed)
    if spec.kind == "student":
        cfg = spec.student
        assert cfg is not None and teacher_cfg is not None and teacher_dim is not None
        arch = student_arch(cfg, data, store.feature_dim, mags, teacher_dim)
        model = build_model(STUDENT_ARCH, arch).to(device)
        targets = None
        if teacher is not None:
            teacher.to(device).eval().requires_grad_(False)
            targets = TeacherTargets(teacher, mags, cache=cfg.max_tiles_train is None)
        step = student_step(model, data, cfg, teacher_cfg, mags, targets)
        loss_cfg, desc, genes = teacher_cfg, f"student fold {data.fold}", False
    else:
        cfg = spec.teacher
        assert cfg is not None
        if spec.kind == "baseline":
            assert spec.baselines is not None
            arch = baseline_arch(spec.baselines, cfg, data, store.feature_dim)
        else:
            arch = teacher_arch(cfg, data, store.feature_dim)
        model = build_model(registry_name(spec.model), arch).to(device)
        step = teacher_step(model, data, cfg, mags)
        loss_cfg, desc, genes = cfg, f"fold {data.fold}", True
    return fit_epochs(model, data, store, mags, optim=cfg.optim, max_tiles=cfg.max_tiles_train, seq=seq,
                      step=step, genes=genes, loss_cfg=loss_cfg, kwargs=arch.to_json(), desc=desc,
                      progress=progress, device=device)


def run_fold(
    spec: ModelSpec,
    inputs: CohortInputs,
    fold: int,
    *,
    task: str,
    seed: int,
    out_dir: Path | str,
    cohort: str = "",
    progress: bool = True,
    teacher_checkpoint: Path | str | None = None,
) -> dict:
    """Train ``spec``'s model on ``fold`` and write its five outputs; returns the metrics dict.

    ``teacher_checkpoint``: the same fold's teacher (students only).
    """
    if spec.needs_rna and inputs.adata is None:
        raise DataError(f"{spec.model} needs RNA (--rna): only slide-only baselines run without it")
    teacher = None
    if spec.kind == "student":
        if teacher_checkpoint is None:
            raise ValueError(f"{spec.model} needs the fold's teacher checkpoint")
        teacher = load_fold_teacher(teacher_checkpoint, inputs, fold, task)
        if tuple(teacher.meta["magnifications"]) != spec.magnifications:
            raise DataError(f"{teacher.path}: magnifications {teacher.meta['magnifications']} differ "
                            f"from the student's {list(spec.magnifications)}")
    protocol = teacher.settings if teacher is not None else spec.teacher
    assert protocol is not None
    data = prepare_fold(inputs.sheet, inputs.splits, fold, inputs.store, inputs.adata, task=task,
                        cfg=protocol,
                        student=None if spec.student is None else spec.student.slide_only_patients)
    if teacher is not None:
        check_teacher_fold(teacher, data)
    device = resolve_device(spec.settings.device)
    log.info("%s fold %d on %s: %s", spec.model, fold, device, spec.settings.model_dump_json())
    if teacher is None:
        result = train_fold(spec, data, inputs.store, seed=seed, device=device, progress=progress)
    else:
        log.info("teacher %s (sha256 %s)", teacher.path, teacher.sha256[:12])
        result = train_fold(spec, data, inputs.store, seed=seed, device=device, progress=progress,
                            teacher=teacher.model if distils(spec.model) else None,
                            teacher_cfg=protocol, teacher_dim=int(teacher.meta["model_kwargs"]["dim"]))
    return _write(spec, result, data, inputs.store, FoldPaths(Path(out_dir)), cohort=cohort, seed=seed,
                  teacher=teacher)


def _write(spec: ModelSpec, result: FoldResult, data: FoldData, store: BagStore, paths: FoldPaths, *,
           cohort: str, seed: int, teacher: FoldTeacher | None) -> dict:
    mags = list(spec.magnifications)
    settings = spec.settings.model_dump(mode="json")
    if teacher is None:
        assert spec.teacher is not None
        meta = {**common_meta(result, data, store, model_name=registry_name(spec.model), variant=spec.model,
                              mags=mags, settings=settings, seed=seed),
                **gene_meta(data, spec.teacher.missing_rna)}
        extra = {"rna_imputed": data.genes.imputed}
    else:
        threshold = risk_threshold(result.inner_predictions)
        meta = {**common_meta(result, data, store, model_name=STUDENT_ARCH, variant=spec.model, mags=mags,
                              settings=settings, seed=seed),
                "risk_threshold": threshold, "tiling": tile_settings(store, mags),
                "teacher": {"checkpoint": str(teacher.path), "sha256": teacher.sha256,
                            "distilled": distils(spec.model)},
                # what `duopath predict` compares a new slide with (risk percentile, out of distribution)
                "reference": training_reference((store.get(x.patient_id) for x in data.samples["train"]),
                                                mags, result.inner_predictions, data.task)}
        assert spec.student is not None
        extra = {"risk_threshold": threshold, "teacher_sha256": teacher.sha256,
                 "slide_only_patients": spec.student.slide_only_patients,
                 # training patients without RNA: the task loss only (no teacher target)
                 "n_train_without_rna": sum(not s.has_rna for s in data.samples["train"]),
                 "n_test_without_rna": sum(not s.has_rna for s in data.samples["test"])}
    return write_fold_outputs(paths, result, data, store, kind=spec.kind, meta=meta, cohort=cohort,
                              model=spec.model, seed=seed, selection=spec.settings.optim.select_on,
                              extra_metrics=extra)


@dataclass(frozen=True)
class FoldTarget:
    """One fold of a training job: its index, its result folder (``results/.../fold{k}``) and,
    for a student, the same fold's teacher checkpoint."""

    fold: int
    out_dir: Path
    teacher_checkpoint: Path | None = None


def run_folds_files(
    spec: ModelSpec,
    targets: Sequence[FoldTarget],
    *,
    sheet: Path | str,
    splits: Path | str,
    rna: Path | str | None,
    features_dir: Path | str,
    task: str,
    seed: int,
    cohort: str = "",
    progress: bool = True,
) -> Mapping[int, dict]:
    """Read the cohort's files once and train every fold of ``targets`` in turn (what
    ``duopath train`` / ``train-student`` do); returns fold -> metrics dict.

    Each fold writes its five outputs atomically into its own folder as soon as it is done, so a
    job stopped at fold 3 leaves folds 0-2 complete and readable.
    """
    if not targets:
        raise ValueError(f"{spec.model}: no fold to train")
    folds = [t.fold for t in targets]
    if len(set(folds)) != len(folds):
        raise ValueError(f"{spec.model}: folds given more than once: {folds}")
    if spec.kind == "student":
        if spec.model not in STUDENT_VARIANTS:
            raise ValueError(f"model must be one of {STUDENT_VARIANTS}, got {spec.model!r}")
        missing = [t.fold for t in targets if t.teacher_checkpoint is None]
        if missing:
            raise ValueError(f"{spec.model} needs the teacher checkpoint of folds {missing}")
    if rna is None and spec.needs_rna:
        raise DataError(f"{spec.model} needs RNA (--rna): only slide-only baselines run without it")
    reads = None  # teachers and students read both (a student: its teacher's RNA targets)
    if spec.kind == "baseline":
        reads = model_inputs(spec.model, missing_rna=spec.settings.missing_rna)
    if reads is not None and RNA not in reads:
        rna = None  # a slide-only baseline keeps every slide patient, with or without RNA
    inputs = load_inputs(sheet=sheet, splits=splits, rna=rna, features_dir=features_dir,
                         magnifications=spec.magnifications, cache_bytes=spec.settings.feature_cache_gb * 1e9,
                         slides=reads is None or SLIDE in reads)
    results = {}
    for target in targets:
        results[target.fold] = run_fold(spec, inputs, target.fold, task=task, seed=seed,
                                        out_dir=target.out_dir, cohort=cohort, progress=progress,
                                        teacher_checkpoint=target.teacher_checkpoint)
    return results


def run_fold_files(
    spec: ModelSpec,
    *,
    sheet: Path | str,
    splits: Path | str,
    rna: Path | str | None,
    features_dir: Path | str,
    fold: int,
    task: str,
    seed: int,
    out_dir: Path | str,
    cohort: str = "",
    progress: bool = True,
    teacher_checkpoint: Path | str | None = None,
) -> dict:
    """Read the cohort's files and run one fold (:func:`run_folds_files` with one target)."""
    target = FoldTarget(int(fold), Path(out_dir),
                        None if teacher_checkpoint is None else Path(teacher_checkpoint))
    return run_folds_files(spec, [target], sheet=sheet, splits=splits, rna=rna, features_dir=features_dir,
                           task=task, seed=seed, cohort=cohort, progress=progress)[target.fold]
