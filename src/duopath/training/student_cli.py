"""``duopath train-student``: one student model on one fold, as ``rules/student.smk`` calls it.

Registered in the main app by ``app.command("train-student")(train_student)`` (``duopath.cli``).
Heavy imports happen inside the function so ``duopath --help`` stays instant.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from duopath.training import cli_options as opt

log = logging.getLogger(__name__)


def train_student(
    sheet: opt.Sheet,
    splits: opt.Splits,
    rna: Annotated[Path, typer.Option("--rna", help="RNA AnnData: the teacher's inputs for the targets")],
    features_dir: opt.FeaturesDir,
    teacher: Annotated[Path, typer.Option("--teacher", help="the same fold's teacher checkpoint.pt")],
    fold: opt.Fold,
    settings: Annotated[str, typer.Option("--settings", help="JSON of the `student:` config section")],
    out_dir: opt.OutDir,
    model: Annotated[str, typer.Option("--model", help="student | student_nokd")] = "student",
    task: opt.Task = "survival",
    seed: opt.Seed = 1337,
    cohort: opt.Cohort = "",
    threads: opt.Threads = 0,
    progress: opt.Progress = True,
) -> None:
    """Train the histology-only student (with or without SKD) on one fold; write its outputs."""
    from duopath.config import StudentConfig
    from duopath.training.data import DataError
    from duopath.training.student_trainer import STUDENT_MODELS, run_student_fold

    opt.check_task_and_threads(task, threads)
    if model not in STUDENT_MODELS:
        raise typer.BadParameter(f"--model must be one of {STUDENT_MODELS}, got {model!r}")
    cfg = StudentConfig.model_validate_json(settings)
    try:
        metrics = run_student_fold(sheet=sheet, splits=splits, rna=rna, features_dir=features_dir,
                                   teacher_checkpoint=teacher, fold=fold, model=model, cfg=cfg, task=task,
                                   seed=seed, out_dir=out_dir, cohort=cohort, progress=progress)
    except (DataError, ValueError) as err:
        logging.getLogger("duopath").error("%s", err)
        raise typer.Exit(code=1) from err
    log.info("%s fold %d: test %s", model, fold, metrics["test"])
