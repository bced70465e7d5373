"""Command-line options shared by ``duopath train`` and ``duopath train-student``.

One definition per option, so the two training commands the rules call cannot drift apart in
name, type or help text (the rules pass the same values to both).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Sheet = Annotated[Path, typer.Option("--sheet", help="canonical sample sheet (cohorts/*/samples.csv)")]
Splits = Annotated[Path, typer.Option("--splits", help="split table (splits/{cohort}.csv)")]
FeaturesDir = Annotated[Path, typer.Option("--features-dir", help="folder of {slide}.zarr stores")]
Fold = Annotated[int, typer.Option("--fold", help="outer fold (0-based)")]
OutDir = Annotated[Path, typer.Option("--out-dir", help="results/{cohort}/{task}/{model}/fold{k}")]
Task = Annotated[str, typer.Option("--task", help="survival | classification")]
Seed = Annotated[int, typer.Option("--seed", help="training seed (training.seed)")]
Cohort = Annotated[str, typer.Option("--cohort", help="cohort name, recorded in metrics.json")]
Threads = Annotated[int, typer.Option("--threads", help="CPU threads for torch (0 = default)")]
Progress = Annotated[bool, typer.Option("--progress/--no-progress")]


def check_task_and_threads(task: str, threads: int) -> None:
    """Refuse an unknown task; set torch's CPU threads when asked (imports torch only then)."""
    if task not in ("survival", "classification"):
        raise typer.BadParameter(f"--task must be survival or classification, got {task!r}")
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
