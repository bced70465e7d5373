"""Option types and the error helper shared by every ``duopath`` command (one definition each).

Why one place: the rules pass the same values to several commands (``--sheet``, ``--fold``,
``--seed`` ...); one definition per option means they cannot drift apart in name, type or help.
Every command reports a bad input the same way: one ``ERROR`` log line and exit status 1, no
traceback (:func:`fail`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer

Settings = Annotated[str, typer.Option("--settings", help="JSON of the stage's config section")]
MppOpt = Annotated[Optional[float], typer.Option("--mpp", help="level-0 µm/px override")]  # noqa: UP045
Sheet = Annotated[Path, typer.Option("--sheet", help="canonical sample sheet (cohorts/{cohort}/samples.csv)")]
Splits = Annotated[Path, typer.Option("--splits", help="split table (splits/{cohort}.csv)")]
FeaturesDir = Annotated[Path, typer.Option("--features-dir", help="folder of {slide}.zarr stores")]
Fold = Annotated[int, typer.Option("--fold", help="outer fold (0-based)")]
OutDir = Annotated[Path, typer.Option("--out-dir", help="results/{cohort}/{task}/{model}/fold{k}")]
Task = Annotated[str, typer.Option("--task", help="survival | classification")]
Seed = Annotated[int, typer.Option("--seed", help="training seed (training.seed)")]
Cohort = Annotated[str, typer.Option("--cohort", help="cohort name, recorded in metrics.json")]
Threads = Annotated[int, typer.Option("--threads", min=0, help="CPU threads for torch (0 = default)")]
Progress = Annotated[bool, typer.Option("--progress/--no-progress")]
ResultsDir = Annotated[
    Path, typer.Option("--results-dir", help="results/{cohort}: {task}/{model}/fold{k}/ below")
]


def fail(err: BaseException) -> NoReturn:
    """Report ``err`` as one error line and exit with status 1 (no traceback)."""
    logging.getLogger("duopath").error("%s", err)
    raise typer.Exit(code=1) from err


def check_task(task: str) -> None:
    """Refuse an unknown task as a usage error (exit 2, naming the known ones)."""
    from duopath.layout import TASKS

    if task not in TASKS:
        raise typer.BadParameter(f"--task must be {' or '.join(TASKS)}, got {task!r}")
