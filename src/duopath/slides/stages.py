"""Per-slide segmentation and tiling stages: files in, files out, one bad slide never stops a cohort.

A :class:`~duopath.slides.reader.SlideError` (unreadable file, damaged pixel data, no mpp, no
tissue) is, with ``on_error="skip"``, recorded in the slide's mask JSON as ``status: failed``
with ``stage: segment`` and the reason, and every downstream stage writes a typed empty output
for it; the cohort summary lists it. (A slide whose damage shows only at full resolution fails
later, in ``embed``: see :func:`duopath.encoding.extract.embed_slide`.)
With ``on_error="fail"`` it propagates and Snakemake stops. Outputs are written atomically.

:func:`prep_slides` runs both stages over several slides in one process (``duopath wsi-prep``,
the batched rules of rules/wsi_prep.smk): each slide exactly as the per-slide ``segment`` and
``tile`` commands would, so the outputs do not depend on how slides are grouped into jobs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

import duopath
from duopath.config import SegmentationConfig, TilingConfig
from duopath.io import write_image, write_json, write_table
from duopath.slides.qc import mask_picture, qc_target_mpp, resample, tiles_picture
from duopath.slides.reader import Slide, SlideError, open_slide
from duopath.slides.tiling import build_grids, empty_tiles
from duopath.slides.tissue import segment

log = logging.getLogger(__name__)

OnError = Literal["skip", "fail"]


def segment_slide(
    slide_path: Path,
    slide_id: str,
    cfg: SegmentationConfig,
    *,
    mask_png: Path,
    mask_json: Path,
    qc_image: Path,
    mpp_override: float | None = None,
    on_error: OnError = "skip",
) -> dict:
    """Segment one slide; write the mask PNG, its JSON metadata and a QC picture (``slides.qc``)."""
    t0 = time.perf_counter()
    meta: dict = {
        "slide_id": slide_id,
        "slide_path": str(slide_path),
        "method": cfg.method,
        "duopath_version": duopath.__version__,
    }
    try:
        with open_slide(slide_path, mpp_override) as slide:
            _check_size(slide, cfg)
            # the QC picture wants ~1,000 px: finer than the mask's thumbnail on small slides
            # only, which are then read once, at the QC's scale, and downsampled for the mask
            qc_mpp = qc_target_mpp(slide.dimensions, slide.mpp)
            if qc_mpp < cfg.mpp:
                qc_rgb, qc_mpp = slide.thumbnail(qc_mpp)
                thumb, mask_mpp = resample(qc_rgb, slide.dimensions, slide.mpp, cfg.mpp)
            else:
                thumb, mask_mpp = slide.thumbnail(cfg.mpp)
                qc_rgb, qc_mpp = thumb, mask_mpp
            meta.update(slide_mpp=slide.mpp, mpp_source=slide.mpp_source,
                        slide_dims=list(slide.dimensions), level_count=len(slide.level_downsamples))
        tissue = segment(thumb, mask_mpp, cfg)
        if not tissue.mask.any():
            raise SlideError(slide_path, "no tissue found",
                             "is the slide blank or very faint? inspect it, or try "
                             "segmentation.method: tiatoolbox_otsu")
    except SlideError as err:
        if on_error == "fail":
            raise
        log.error("%s (slide %s skipped; on_slide_error: skip)", err, slide_id)
        meta.update(status="failed", stage="segment", error=str(err),
                    seconds=time.perf_counter() - t0)
        write_image(mask_png, Image.new("L", (1, 1), 0))
        write_image(qc_image, _failed_picture(str(err)))
        write_json(mask_json, meta)
        return meta
    meta.update(
        status="ok",
        error=None,
        mask_mpp=mask_mpp,
        mask_shape=list(tissue.mask.shape),
        tissue_area_mm2=tissue.area_mm2,
        tissue_fraction=tissue.fraction,
        threshold=tissue.threshold,
    )
    picture, geometry = mask_picture(qc_rgb, qc_mpp, tissue.mask, tissue.excluded, meta)
    meta.update(geometry, seconds=time.perf_counter() - t0)
    write_image(mask_png, Image.fromarray((tissue.mask * 255).astype(np.uint8)))
    write_image(qc_image, picture)
    write_json(mask_json, meta)
    log.info("%s: %.2f mm² tissue at %.1f µm/px in %.2f s", slide_id, tissue.area_mm2, mask_mpp,
             meta["seconds"])
    return meta


def _check_size(slide: Slide, cfg: SegmentationConfig) -> None:
    """A slide smaller than the smallest tissue piece kept is not a slide (a thumbnail, a label
    image, or a wrong mpp): say so, rather than "no tissue found"."""
    w, h = slide.dimensions
    w_um, h_um = w * slide.mpp, h * slide.mpp
    if w_um * h_um < cfg.min_object_um2:
        raise SlideError(
            slide.path, f"the slide is only {w_um:.0f} × {h_um:.0f} µm ({w} × {h} px at "
            f"{slide.mpp:g} µm/px), smaller than the smallest tissue piece kept "
            f"(segmentation.min_object_um2 = {cfg.min_object_um2:g} µm²)",
            "is it a thumbnail or label image rather than the slide, or is its mpp wrong?",
        )


def load_mask(mask_png: Path, mask_json: Path) -> tuple[np.ndarray, dict]:
    meta = json.loads(Path(mask_json).read_text())
    mask = np.asarray(Image.open(mask_png)) > 0
    return mask, meta


def tile_slide(
    mask_png: Path,
    mask_json: Path,
    cfg: TilingConfig,
    *,
    tiles_out: Path,
    qc_in: Path | None = None,
    qc_out: Path | None = None,
) -> pd.DataFrame:
    """Build the nested grids of one slide from its mask; write the tile table (+ QC picture)."""
    mask, meta = load_mask(mask_png, mask_json)
    if meta.get("status") != "ok":
        tiles = empty_tiles()
        log.warning("%s: segmentation failed (%s); writing an empty tile table",
                    meta.get("slide_id"), meta.get("error"))
    else:
        t0 = time.perf_counter()
        tiles = build_grids(mask, meta["mask_mpp"], tuple(meta["slide_dims"]), meta["slide_mpp"], cfg)
        counts = tiles.groupby("magnification", sort=False).size().to_dict()
        partial = tiles.groupby("magnification", sort=False)["partial"].sum().to_dict()
        cov = {m: f"{c:.1%}" for m, c in tiles.attrs.get("coverage", {}).items()}
        log.info("%s: tiles %s (partial parents %s), tissue coverage %s in %.3f s", meta["slide_id"],
                 counts, partial, cov, time.perf_counter() - t0)
        if tiles.empty:
            log.warning("%s: no tile reaches min_tissue_fraction %.2f", meta["slide_id"],
                        cfg.min_tissue_fraction)
    write_table(tiles_out, tiles)
    if qc_out is not None:
        base = Image.open(qc_in).convert("RGB") if qc_in is not None else Image.new("RGB", (1, 1))
        ok = not tiles.empty and meta.get("status") == "ok"
        write_image(qc_out, tiles_picture(base, tiles, meta, cfg.min_tissue_fraction) if ok else base)
    return tiles


@dataclass(frozen=True)
class PrepJob:
    """One slide of a ``duopath wsi-prep`` job: its file and the five files written for it."""

    slide_path: Path
    slide_id: str
    mask_png: Path
    mask_json: Path
    mask_qc: Path
    tiles: Path
    tiles_qc: Path
    mpp_override: float | None = None


def prep_slides(
    jobs: Sequence[PrepJob],
    seg_cfg: SegmentationConfig,
    tile_cfg: TilingConfig,
    *,
    on_error: OnError = "skip",
) -> list[dict]:
    """Segment, then tile, every slide of ``jobs`` in turn; returns each slide's mask metadata.

    A bad slide under ``on_error="skip"`` gets its ``failed`` mask JSON and an empty tile table,
    and the next slide goes on; under ``"fail"`` its error stops the job. A slide's five files
    are complete (each written atomically) before the next slide starts.
    """
    t0 = time.perf_counter()
    metas = []
    for job in jobs:
        meta = segment_slide(job.slide_path, job.slide_id, seg_cfg, mask_png=job.mask_png,
                             mask_json=job.mask_json, qc_image=job.mask_qc,
                             mpp_override=job.mpp_override, on_error=on_error)
        tile_slide(job.mask_png, job.mask_json, tile_cfg, tiles_out=job.tiles, qc_in=job.mask_qc,
                   qc_out=job.tiles_qc)
        metas.append(meta)
    failed = [m["slide_id"] for m in metas if m.get("status") != "ok"]
    log.info("%d slides segmented and tiled in %.1f s (%d failed%s)", len(metas),
             time.perf_counter() - t0, len(failed), f": {', '.join(failed)}" if failed else "")
    return metas


def _failed_picture(message: str) -> Image.Image:
    img = Image.new("RGB", (480, 60), (240, 240, 240))
    ImageDraw.Draw(img).text((8, 8), message[:80] + ("\n" + message[80:160] if len(message) > 80 else ""),
                             fill=(160, 0, 0))
    return img
