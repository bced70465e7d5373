"""``duopath train``: one model (teacher, an ablation or a baseline) on one fold, as the rules call it.

Registered in the main app by ``app.command("train")(train)`` (``duopath.cli``). Heavy imports
happen inside the function so ``duopath --help`` stays instant.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from duopath.training import cli_options as opt

log = logging.getLogger(__name__)


def train(
    sheet: opt.Sheet,
    splits: opt.Splits,
    features_dir: opt.FeaturesDir,
    fold: opt.Fold,
    settings: Annotated[str, typer.Option("--settings", help="JSON of the `teacher:` config section")],
    out_dir: opt.OutDir,
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
    """Train one model on one fold; write checkpoint, log, predictions and metrics."""
    from duopath.config import BaselinesConfig, TeacherConfig
    from duopath.training.data import DataError
    from duopath.training.predict_fold import run_fold

    opt.check_task_and_threads(task, threads)
    cfg = TeacherConfig.model_validate_json(settings)
    baselines = None
    if baseline_settings is not None:
        baselines = BaselinesConfig.model_validate_json(baseline_settings)
    mags = [m.strip() for m in magnifications.split(",") if m.strip()]
    try:
        metrics = run_fold(sheet=sheet, splits=splits, rna=rna, features_dir=features_dir, fold=fold,
                           model=model, cfg=cfg, baselines=baselines, tiled_magnifications=mags,
                           task=task, seed=seed, out_dir=out_dir, cohort=cohort, progress=progress)
    except (DataError, ValueError) as err:
        logging.getLogger("duopath").error("%s", err)
        raise typer.Exit(code=1) from err
    log.info("%s fold %d: test %s", model, fold, metrics["test"])


def main() -> None:
    """``python -m duopath.training.cli``: the same command without the main app."""
    import sys

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    typer.run(train)


if __name__ == "__main__":
    main()
