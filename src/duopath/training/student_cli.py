"""``duopath train-student``: one student model on one fold, as ``rules/student.smk`` calls it.

Registered in the main app by ``app.command("train-student")(train_student)`` (``duopath.cli``).
Heavy imports happen inside the function so ``duopath --help`` stays instant.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

log = logging.getLogger(__name__)


def train_student(
    sheet: Annotated[Path, typer.Option("--sheet", help="canonical sample sheet (cohorts/*/samples.csv)")],
    splits: Annotated[Path, typer.Option("--splits", help="split table (splits/{cohort}.csv)")],
    rna: Annotated[Path, typer.Option("--rna", help="RNA AnnData: the teacher's inputs for the targets")],
    features_dir: Annotated[Path, typer.Option("--features-dir", help="folder of {slide}.zarr stores")],
    teacher: Annotated[Path, typer.Option("--teacher", help="the same fold's teacher checkpoint.pt")],
    fold: Annotated[int, typer.Option("--fold", help="outer fold (0-based)")],
    settings: Annotated[str, typer.Option("--settings", help="JSON of the `student:` config section")],
    out_dir: Annotated[Path, typer.Option("--out-dir", help="results/{cohort}/{task}/{model}/fold{k}")],
    model: Annotated[str, typer.Option("--model", help="student | student_nokd")] = "student",
    task: Annotated[str, typer.Option("--task", help="survival | classification")] = "survival",
    seed: Annotated[int, typer.Option("--seed", help="training seed (training.seed)")] = 1337,
    cohort: Annotated[str, typer.Option("--cohort", help="cohort name, recorded in metrics.json")] = "",
    threads: Annotated[int, typer.Option("--threads", help="CPU threads for torch (0 = default)")] = 0,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Train the histology-only student (with or without SKD) on one fold; write its outputs."""
    from duopath.config import StudentConfig
    from duopath.training.data import DataError
    from duopath.training.student_trainer import STUDENT_MODELS, run_student_fold

    if task not in ("survival", "classification"):
        raise typer.BadParameter(f"--task must be survival or classification, got {task!r}")
    if model not in STUDENT_MODELS:
        raise typer.BadParameter(f"--model must be one of {STUDENT_MODELS}, got {model!r}")
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    cfg = StudentConfig.model_validate_json(settings)
    try:
        metrics = run_student_fold(sheet=sheet, splits=splits, rna=rna, features_dir=features_dir,
                                   teacher_checkpoint=teacher, fold=fold, model=model, cfg=cfg, task=task,
                                   seed=seed, out_dir=out_dir, cohort=cohort, progress=progress)
    except (DataError, ValueError) as err:
        logging.getLogger("duopath").error("%s", err)
        raise typer.Exit(code=1) from err
    log.info("%s fold %d: test %s", model, fold, metrics["test"])
