"""``duopath train`` (teacher, an ablation or a baseline) and ``duopath train-student``: one model
on one or more folds, as the rules call them (all folds of a (cohort, task, model) in one process:
the cohort's inputs are read once). Both run ``duopath.training.run.run_folds_files``.

Folds are given as pairs, ``--fold K --out-dir DIR`` repeated (students add one ``--teacher CKPT``
per fold, same order): the k-th ``--out-dir`` is the k-th ``--fold``'s result folder. One pair
re-runs that fold alone, with the same result as in the multi-fold job.
``duopath coxnet``: the penalised Cox baseline (``duopath.training.coxnet_fold``), the same
``--fold K --out-dir DIR`` pairs and the same fold files.
Heavy imports happen inside the functions so ``duopath --help`` stays instant.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from duopath.cli import options as opt

log = logging.getLogger(__name__)

Folds = Annotated[list[int], typer.Option("--fold", help="outer fold (0-based); repeat for several folds")]
OutDirs = Annotated[
    list[Path], typer.Option("--out-dir", help="results/{cohort}/{task}/{model}/fold{k}: one per --fold, "
                             "in the same order")
]


def fold_targets(folds: list[int], out_dirs: list[Path], teachers: list[Path] | None = None) -> list:
    """Pair the k-th ``--fold`` with the k-th ``--out-dir`` (and ``--teacher``), refusing a
    count mismatch as a usage error (exit 2) naming both counts."""
    from duopath.training.run import FoldTarget

    if len(out_dirs) != len(folds):
        raise typer.BadParameter(f"{len(folds)} --fold but {len(out_dirs)} --out-dir: give one "
                                 "--out-dir per --fold, in the same order")
    if teachers is not None and len(teachers) != len(folds):
        raise typer.BadParameter(f"{len(folds)} --fold but {len(teachers)} --teacher: give the "
                                 "teacher checkpoint of every --fold, in the same order")
    return [FoldTarget(k, d, None if teachers is None else teachers[i])
            for i, (k, d) in enumerate(zip(folds, out_dirs, strict=True))]


def run_model_folds(model: str, targets: list, spec: Mapping[str, Any], *, threads: int,
                    **inputs: Any) -> None:
    """What ``train`` and ``train-student`` share once their options are read: set the thread
    count, make ``model``'s spec (``run.model_spec`` with ``spec``), train every fold of
    ``targets`` (``run.run_folds_files`` with the cohort ``inputs``) and log each test score.

    A data or setting problem ends the command with one error line (exit 1): DataError,
    CheckpointError, GpuError and SampleSheetError are all ValueErrors.
    """
    from duopath.devices import set_threads
    from duopath.training.run import model_spec, run_folds_files

    set_threads(threads)
    try:
        made = model_spec(model, **spec)
        metrics = run_folds_files(made, targets, **inputs)
    except ValueError as err:
        opt.fail(err)
    for k, m in metrics.items():
        log.info("%s fold %d: test %s", model, k, m["test"])


def train(
    sheet: opt.Sheet,
    splits: opt.Splits,
    features_dir: opt.FeaturesDir,
    fold: Folds,
    settings: Annotated[str, typer.Option("--settings", help="JSON of the `teacher:` config section")],
    out_dir: OutDirs,
    rna: Annotated[
        Path | None, typer.Option("--rna", help="RNA AnnData (rna/{cohort}.h5ad); omit for a cohort "
                                  "without RNA (slide-only baselines)")
    ] = None,
    model: Annotated[
        str, typer.Option("--model", help="teacher, teacher_<ablation> or a baseline (abmil, ...)")
    ] = "teacher",
    baseline_settings: Annotated[
        str | None, typer.Option("--baseline-settings", help="JSON of the `baselines:` config section")
    ] = None,
    task: opt.Task = "survival",
    magnifications: Annotated[
        str, typer.Option("--magnifications", help="tiled magnifications, coarse to fine (comma list)")
    ] = "10x,20x",
    seed: opt.Seed = 1337,
    cohort: opt.Cohort = "",
    threads: opt.Threads = 0,
    progress: opt.Progress = True,
) -> None:
    """Train one model on each given fold; write checkpoint, log, predictions and metrics per fold."""
    from duopath.config import BaselinesConfig, TeacherConfig

    opt.check_task(task)
    targets = fold_targets(fold, out_dir)
    cfg = TeacherConfig.model_validate_json(settings)
    baselines = None
    if baseline_settings is not None:
        baselines = BaselinesConfig.model_validate_json(baseline_settings)
    mags = [m.strip() for m in magnifications.split(",") if m.strip()]
    run_model_folds(model, targets, {"teacher": cfg, "baselines": baselines, "tiled_magnifications": mags},
                    threads=threads, sheet=sheet, splits=splits, rna=rna, features_dir=features_dir,
                    task=task, seed=seed, cohort=cohort, progress=progress)


def train_student(
    sheet: opt.Sheet,
    splits: opt.Splits,
    rna: Annotated[Path, typer.Option("--rna", help="RNA AnnData: the teacher's inputs for the targets")],
    features_dir: opt.FeaturesDir,
    teacher: Annotated[
        list[Path], typer.Option("--teacher", help="the teacher checkpoint of each --fold, same order")
    ],
    fold: Folds,
    settings: Annotated[str, typer.Option("--settings", help="JSON of the `student:` config section")],
    out_dir: OutDirs,
    model: Annotated[
        str, typer.Option("--model", help="student | student_nokd | student_kdonly")
    ] = "student",
    task: opt.Task = "survival",
    seed: opt.Seed = 1337,
    cohort: opt.Cohort = "",
    threads: opt.Threads = 0,
    progress: opt.Progress = True,
) -> None:
    """Train the histology-only student (with or without SKD) on each given fold; write its outputs."""
    from duopath.config import StudentConfig
    from duopath.training.variants import STUDENT_VARIANTS

    opt.check_task(task)
    targets = fold_targets(fold, out_dir, teacher)
    if model not in STUDENT_VARIANTS:
        raise typer.BadParameter(f"--model must be one of {STUDENT_VARIANTS}, got {model!r}")
    cfg = StudentConfig.model_validate_json(settings)
    # the magnifications come from a teacher checkpoint; each fold checks its own teacher's
    run_model_folds(model, targets, {"student": cfg, "teacher_checkpoint": teacher[0]},
                    threads=threads, sheet=sheet, splits=splits, rna=rna, features_dir=features_dir,
                    task=task, seed=seed, cohort=cohort, progress=progress)


def coxnet(
    sheet: opt.Sheet,
    splits: opt.Splits,
    fold: Folds,
    settings: Annotated[str, typer.Option("--settings", help="JSON of the `teacher:` config section "
                                          "(survival bins and RNA handling, as for the SNN)")],
    rna: Annotated[Path, typer.Option("--rna", help="RNA AnnData (rna/{cohort}.h5ad)")],
    out_dir: OutDirs,
    task: opt.Task = "survival",
    seed: opt.Seed = 1337,
    cohort: opt.Cohort = "",
) -> None:
    """Fit the penalised Cox baseline on each given fold's RNA; write the same fold files as ``train``."""
    from duopath.config import TeacherConfig
    from duopath.training.coxnet_fold import run_coxnet_folds

    opt.check_task(task)
    targets = [(t.fold, t.out_dir) for t in fold_targets(fold, out_dir)]
    cfg = TeacherConfig.model_validate_json(settings)
    try:
        metrics = run_coxnet_folds(sheet=sheet, splits=splits, rna=rna, targets=targets, cfg=cfg,
                                   seed=seed, cohort=cohort, task=task)
    except ValueError as err:  # DataError, SampleSheetError are ValueErrors
        opt.fail(err)
    for k, m in metrics.items():
        log.info("coxnet fold %d: test %s", k, m["test"])
