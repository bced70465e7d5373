"""``duopath validate``, ``demo``, ``sheet`` and ``splits``: the cohort stages (config, sample
sheet, folds). Heavy imports happen inside the commands, so ``duopath --help`` stays instant.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from duopath.cli.options import Settings, fail

log = logging.getLogger(__name__)


def validate(config: Annotated[Path, typer.Argument(help="config.yaml")] = Path("config.yaml")) -> None:
    """Validate a config file and every cohort's sample sheet (no slide is opened)."""
    from duopath.cohort import SampleSheetError
    from duopath.config import ConfigError, load_config
    from duopath.workflow import Plan

    try:
        plan = Plan(load_config(config))
        for cohort in plan.cohorts:
            sheet = plan.sheet(cohort)
            plan.check_folds(cohort)
            typer.echo(f"{cohort}: {sheet['patient_id'].nunique()} patients, {len(sheet)} slides")
    except (ConfigError, SampleSheetError) as err:
        fail(err)
    typer.echo("ok")


def demo(
    settings: Settings,
    out: Annotated[Path, typer.Option("--out", help="demo cohort directory")],
    threads: Annotated[int, typer.Option("--threads", help="processes rendering slides")] = 1,
) -> None:
    """Write the embedded demo cohort (slides, RNA counts, clinical table, planted truth)."""
    from duopath.config import DemoConfig
    from duopath.demo import write_demo

    write_demo(DemoConfig.model_validate_json(settings), out, workers=threads)


def sheet(
    cohort_settings: Annotated[str, typer.Option("--cohort-settings", help="cohort JSON")],
    source: Annotated[Path, typer.Option("--source", help="the user's (or demo's) sheet")],
    out: Annotated[Path, typer.Option("--out")],
    demo_dir: Annotated[Optional[Path], typer.Option("--demo-dir")] = None,  # noqa: UP045
) -> None:
    """Validate a sample sheet and write it in the canonical columns."""
    from duopath.cohort import SampleSheetError, canonicalise_sheet, read_table
    from duopath.config import CohortConfig
    from duopath.io import write_table

    cohort = CohortConfig.model_validate_json(cohort_settings)
    slide_dir = demo_dir if cohort.demo is not None else cohort.slide_dir
    try:
        table = canonicalise_sheet(read_table(source), cohort, source=str(source),
                                   slide_dir=slide_dir)
    except SampleSheetError as err:
        fail(err)
    write_table(out, table)


def splits(
    sheet: Annotated[Path, typer.Option("--sheet", help="canonical sample sheet")],
    task: Annotated[str, typer.Option("--task", help="survival | classification")],
    settings: Settings,
    out: Annotated[Path, typer.Option("--out", help="splits CSV")],
    info: Annotated[Path, typer.Option("--info", help="splits metadata JSON")],
) -> None:
    """Patient-level, stratified, site-aware k-fold splits with inner validation sets."""
    import dataclasses

    from duopath.cohort import SampleSheetError, read_canonical_sheet
    from duopath.config import TrainingConfig
    from duopath.io import write_json, write_table
    from duopath.training.splits import SplitError, make_splits, patient_table

    cfg = TrainingConfig.model_validate_json(settings)
    try:
        table, meta = make_splits(patient_table(read_canonical_sheet(sheet), task),
                                  folds=cfg.folds, val_fraction=cfg.val_fraction, seed=cfg.seed,
                                  site_disjoint=cfg.site_disjoint)
    except SplitError as err:
        fail(ValueError(f"{sheet}: {err}"))
    except SampleSheetError as err:
        fail(err)
    write_table(out, table)
    write_json(info, dataclasses.asdict(meta))


def config_schema(
    out: Annotated[Optional[Path], typer.Option("--out", help="write here (default: stdout)")] = None,  # noqa: UP045
) -> None:
    """JSON schema of config.yaml (from the pydantic models), for editors' completion and checks."""
    from duopath.config_schema import schema_json

    text = schema_json()
    if out is None:
        typer.echo(text, nl=False)
    else:
        from duopath.io import write_text

        write_text(out, text)
