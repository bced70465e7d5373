"""``duopath segment``, ``tile``, ``wsi-prep``, ``embed``, ``wsi-summary`` and ``encoders``: the
per-slide stages. ``wsi-prep`` and ``embed`` take one or several slides (their per-slide options
repeated, in the slides' order): the batched rules run several slides per process
(``duopath.batches``).

Heavy imports (openslide, torch, tiatoolbox) happen inside the commands, so ``duopath --help``
stays instant.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from duopath.cli.options import MppOpt, Settings, Threads, fail

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


def wsi_prep(
    slides: Annotated[list[Path], typer.Argument(help="slide file(s)")],
    slide_ids: Annotated[list[str], typer.Option("--slide-id", help="once per slide")],
    masks: Annotated[list[Path], typer.Option("--mask", help="mask PNG to write, once per slide")],
    metas: Annotated[list[Path], typer.Option("--meta", help="mask JSON to write, once per slide")],
    qcs: Annotated[list[Path], typer.Option("--qc", help="mask QC picture to write, once per slide")],
    tiles: Annotated[list[Path], typer.Option("--tiles", help="tile table (.parquet), once per slide")],
    tiles_qcs: Annotated[list[Path], typer.Option("--tiles-qc", help="tile QC picture, once per slide")],
    segmentation: Annotated[str, typer.Option("--segmentation", help="JSON of the `segmentation:` section")],
    tiling: Annotated[str, typer.Option("--tiling", help="JSON of the `tiling:` section")],
    mpps: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--mpp", help="level-0 µm/px override: none, or once per slide ('auto' = the file's)")] = None,
    on_error: Annotated[str, typer.Option("--on-error", help="skip | fail")] = "skip",
) -> None:
    """Segment and tile one or several slides in one process (what `segment` + `tile` do per slide)."""
    from duopath.config import SegmentationConfig, TilingConfig
    from duopath.slides.reader import SlideError
    from duopath.slides.stages import PrepJob, prep_slides

    try:
        n = _check_per_slide(len(slides), {"--slide-id": slide_ids, "--mask": masks, "--meta": metas,
                                           "--qc": qcs, "--tiles": tiles, "--tiles-qc": tiles_qcs})
        seg_cfg = SegmentationConfig.model_validate_json(segmentation)
        tile_cfg = TilingConfig.model_validate_json(tiling)
        jobs = [PrepJob(*job) for job in zip(slides, slide_ids, masks, metas, qcs, tiles, tiles_qcs,
                                             _mpp_values(mpps, n), strict=True)]
        prep_slides(jobs, seg_cfg, tile_cfg, on_error="fail" if on_error == "fail" else "skip")
    except (SlideError, ValueError) as err:
        fail(err)


def _check_per_slide(n: int, given: dict[str, list]) -> int:
    """``n`` when every per-slide option was given once per slide; a ValueError naming the first
    option that was not."""
    for name, values in given.items():
        if len(values) != n:
            raise ValueError(f"{n} slide(s) but {len(values)} {name} value(s): give one per slide")
    return n


def _mpp_values(mpps: list[str] | None, n: int) -> list[float | None]:
    """``--mpp`` values (``auto`` = the file's) -> one override or None per slide."""
    values = mpps or ["auto"] * n
    _check_per_slide(n, {"--mpp": values})
    return [None if v.lower() == "auto" else float(v) for v in values]


def embed(
    slides: Annotated[list[Path], typer.Argument(help="slide file(s)")],
    tiles: Annotated[list[Path], typer.Option("--tiles", help="tile table, once per slide")],
    slide_ids: Annotated[list[str], typer.Option("--slide-id", help="once per slide")],
    settings: Settings,
    outs: Annotated[list[Path], typer.Option("--out", help="features store (.zarr), once per slide")],
    mpps: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--mpp", help="level-0 µm/px override: none, or once per slide ('auto' = the file's)")] = None,
    on_error: Annotated[str, typer.Option("--on-error", help="skip | fail")] = "skip",
    num_workers: Annotated[Optional[int], typer.Option(  # noqa: UP045
        "--num-workers", min=0, help="tile-reading processes (overrides the settings' num_workers)")] = None,
    threads: Threads = 0,
) -> None:
    """Embed every tile of one or several slides into one zarr store each (model loaded once).

    ``--num-workers`` and ``--threads`` come apart from ``--settings`` because they say how the job
    runs, not what the features are (``EncoderConfig.JOB_KEYS``): the rules leave them out of the
    settings so that changing them re-embeds nothing.
    """
    from duopath.config import EncoderConfig
    from duopath.devices import set_threads
    from duopath.encoding.extract import SlideJob, embed_slides
    from duopath.encoding.registry import EncoderError
    from duopath.slides.reader import SlideError

    try:
        n = _check_per_slide(len(slides), {"--tiles": tiles, "--slide-id": slide_ids, "--out": outs})
        mpp = _mpp_values(mpps, n)
        jobs = [SlideJob(*job) for job in zip(slides, tiles, outs, slide_ids, mpp, strict=True)]
        cfg = EncoderConfig.model_validate_json(settings)
        if num_workers is not None:
            cfg = cfg.model_copy(update={"num_workers": num_workers})
        set_threads(threads)
        embed_slides(jobs, cfg, on_error="fail" if on_error == "fail" else "skip")
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
