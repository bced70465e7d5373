"""The ``duopath`` command line: the same steps the Snakemake rules call, one command each.

Stage settings travel as the JSON of their pydantic config section (``--settings``), so a rule
passes exactly what was validated and a settings change re-runs the rule. Heavy imports (torch,
scanpy, tiatoolbox) happen inside the commands, so ``duopath --help`` is instant.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="duopath: WSI + RNA-seq disentangled multi-modal pipeline steps.")

Settings = Annotated[str, typer.Option("--settings", help="JSON of the stage's config section")]
MppOpt = Annotated[Optional[float], typer.Option("--mpp", help="level-0 µm/px override")]  # noqa: UP045


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _fail(err: Exception) -> None:
    logging.getLogger("duopath").error("%s", err)
    raise typer.Exit(code=1)


@app.command()
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
        _fail(err)
    typer.echo("ok")


@app.command()
def demo(
    settings: Settings,
    out: Annotated[Path, typer.Option("--out", help="demo cohort directory")],
) -> None:
    """Write the embedded demo cohort (slides, RNA counts, clinical table, planted truth)."""
    from duopath.config import DemoConfig
    from duopath.demo import write_demo

    write_demo(DemoConfig.model_validate_json(settings), out)


@app.command()
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
        _fail(err)
    write_table(out, table)


@app.command()
def segment(
    slide: Annotated[Path, typer.Argument(help="slide file")],
    slide_id: Annotated[str, typer.Option("--slide-id")],
    settings: Settings,
    mask: Annotated[Path, typer.Option("--mask", help="mask PNG to write")],
    meta: Annotated[Path, typer.Option("--meta", help="mask JSON to write")],
    qc: Annotated[Path, typer.Option("--qc", help="QC overlay image to write")],
    mpp: MppOpt = None,
    on_error: Annotated[str, typer.Option("--on-error", help="skip | fail")] = "skip",
) -> None:
    """Segment tissue on a low-resolution thumbnail."""
    from duopath.config import SegmentationConfig
    from duopath.slides.reader import SlideError
    from duopath.slides.stages import segment_slide

    try:
        segment_slide(slide, slide_id, SegmentationConfig.model_validate_json(settings),
                      mask_png=mask, mask_json=meta, qc_image=qc, mpp_override=mpp,
                      on_error="fail" if on_error == "fail" else "skip")
    except SlideError as err:
        _fail(err)


@app.command()
def tile(
    mask: Annotated[Path, typer.Option("--mask")],
    meta: Annotated[Path, typer.Option("--meta")],
    settings: Settings,
    out: Annotated[Path, typer.Option("--out", help="tile table (.parquet)")],
    qc_in: Annotated[Optional[Path], typer.Option("--qc-in")] = None,  # noqa: UP045
    qc_out: Annotated[Optional[Path], typer.Option("--qc-out")] = None,  # noqa: UP045
) -> None:
    """Build the nested multi-magnification tile grids of one slide."""
    from duopath.config import TilingConfig
    from duopath.slides.stages import tile_slide

    tile_slide(mask, meta, TilingConfig.model_validate_json(settings), tiles_out=out,
               qc_in=qc_in, qc_out=qc_out)


@app.command()
def embed(
    slide: Annotated[Path, typer.Argument(help="slide file")],
    tiles: Annotated[Path, typer.Option("--tiles")],
    slide_id: Annotated[str, typer.Option("--slide-id")],
    settings: Settings,
    out: Annotated[Path, typer.Option("--out", help="features store (.zarr)")],
    mpp: MppOpt = None,
    on_error: Annotated[str, typer.Option("--on-error", help="skip | fail")] = "skip",
) -> None:
    """Embed every tile of one slide with the configured encoder into a zarr store."""
    from duopath.config import EncoderConfig
    from duopath.encoding.extract import embed_slide
    from duopath.encoding.registry import EncoderError
    from duopath.slides.reader import SlideError

    try:
        embed_slide(slide, tiles, out, EncoderConfig.model_validate_json(settings),
                    slide_id=slide_id, mpp_override=mpp,
                    on_error="fail" if on_error == "fail" else "skip")
    except (EncoderError, SlideError, ValueError) as err:
        _fail(err)


@app.command()
def splits(
    sheet: Annotated[Path, typer.Option("--sheet", help="canonical sample sheet")],
    task: Annotated[str, typer.Option("--task", help="survival | classification")],
    settings: Settings,
    out: Annotated[Path, typer.Option("--out", help="splits CSV")],
    info: Annotated[Path, typer.Option("--info", help="splits metadata JSON")],
) -> None:
    """Patient-level, stratified, site-aware k-fold splits with inner validation sets."""
    import dataclasses

    import pandas as pd

    from duopath.config import TrainingConfig
    from duopath.io import write_json, write_table
    from duopath.training.splits import SplitError, make_splits, patient_table

    cfg = TrainingConfig.model_validate_json(settings)
    try:
        table, meta = make_splits(patient_table(pd.read_csv(sheet, dtype={"label": str}), task),
                                  folds=cfg.folds, val_fraction=cfg.val_fraction, seed=cfg.seed,
                                  site_disjoint=cfg.site_disjoint)
    except SplitError as err:
        _fail(ValueError(f"{sheet}: {err}"))
    write_table(out, table)
    write_json(info, dataclasses.asdict(meta))


@app.command("wsi-summary")
def wsi_summary(
    masks: Annotated[list[Path], typer.Option("--mask-meta", help="mask JSON (repeat)")],
    tiles: Annotated[list[Path], typer.Option("--tiles", help="tile table (repeat, same order)")],
    out: Annotated[Path, typer.Option("--out")],
    features: Annotated[Optional[list[Path]], typer.Option(  # noqa: UP045
        "--features", help="feature store (repeat, same order; adds embed failures)")] = None,
) -> None:
    """One row per slide: status, failed stage, error, tissue area, tile counts per magnification."""
    from duopath.slides.summary import summarise

    summarise(masks, tiles, out, features or ())


@app.command()
def encoders() -> None:
    """List the tile encoders of the registry."""
    from duopath.encoding.registry import ENCODERS

    for spec in ENCODERS.values():
        typer.echo(f"{spec.name:20s} dim={spec.dim:<5d} px={spec.input_px:<4d} "
                   f"source={spec.source:12s} {spec.description}")


def _register_stage_commands() -> None:
    """Stage packages define their own commands; importing them is cheap (no heavy imports)."""
    from duopath.inference.cli import predict
    from duopath.report.cli import evaluate, heatmaps, report
    from duopath.rna.cli import rna
    from duopath.training.cli import train
    from duopath.training.student_cli import train_student

    app.command("rna")(rna)
    app.command("train")(train)
    app.command("train-student")(train_student)
    app.command("predict")(predict)
    app.command("evaluate")(evaluate)
    app.command("heatmaps")(heatmaps)
    app.command("report")(report)


_register_stage_commands()

if __name__ == "__main__":
    app()
