"""``duopath segment``, ``tile``, ``embed``, ``wsi-summary`` and ``encoders``: the per-slide stages.

Heavy imports (openslide, torch, tiatoolbox) happen inside the commands, so ``duopath --help``
stays instant.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from duopath.cli.options import MppOpt, Settings, fail

log = logging.getLogger(__name__)


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
        fail(err)


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


def embed(
    slides: Annotated[list[Path], typer.Argument(help="slide file(s)")],
    tiles: Annotated[list[Path], typer.Option("--tiles", help="tile table, once per slide")],
    slide_ids: Annotated[list[str], typer.Option("--slide-id", help="once per slide")],
    settings: Settings,
    outs: Annotated[list[Path], typer.Option("--out", help="features store (.zarr), once per slide")],
    mpps: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--mpp", help="level-0 µm/px override: none, or once per slide ('auto' = the file's)")] = None,
    on_error: Annotated[str, typer.Option("--on-error", help="skip | fail")] = "skip",
) -> None:
    """Embed every tile of one or several slides into one zarr store each (model loaded once)."""
    from duopath.config import EncoderConfig
    from duopath.encoding.extract import SlideJob, embed_slides
    from duopath.encoding.registry import EncoderError
    from duopath.slides.reader import SlideError

    try:
        n = len(slides)
        for name, given in (("--tiles", tiles), ("--slide-id", slide_ids), ("--out", outs),
                            ("--mpp", mpps or ["auto"] * n)):
            if len(given) != n:
                raise ValueError(f"{n} slide(s) but {len(given)} {name} value(s): give one per slide")
        mpp = [None if v.lower() == "auto" else float(v) for v in (mpps or ["auto"] * n)]
        jobs = [SlideJob(*job) for job in zip(slides, tiles, outs, slide_ids, mpp, strict=True)]
        embed_slides(jobs, EncoderConfig.model_validate_json(settings),
                     on_error="fail" if on_error == "fail" else "skip")
    except (EncoderError, SlideError, ValueError) as err:
        fail(err)


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


def encoders() -> None:
    """List the tile encoders of the registry."""
    from duopath.encoding.registry import ENCODERS

    for spec in ENCODERS.values():
        typer.echo(f"{spec.name:20s} dim={spec.dim:<5d} px={spec.input_px:<4d} "
                   f"source={spec.source:12s} {spec.description}")
