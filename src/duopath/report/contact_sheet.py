"""A slide-level QC contact sheet: every slide's tile-grid thumbnail with its status, tissue
area and tile counts, problem slides first, in one PNG.

Why: ``wsi_summary.csv`` says *that* a slide failed or has few tiles; the contact sheet lets a
reader see in one glance *why* (pen marks kept as tissue, a blank scan, a tiny biopsy, a
failed read), which is what a pathologist checks before trusting a cohort's results. It is
part of the Snakemake report (``snakemake --report``) next to the per-slide QC overlays.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from duopath.io import write_image

log = logging.getLogger(__name__)

STATUS_COLOURS = {"ok": (46, 125, 50), "failed": (198, 40, 40)}
OTHER_STATUS_COLOUR = (230, 120, 0)  # no_tissue, no_tiles, ...
TEXT_LINES = 3
LINE_PX = 14
MAX_COLUMNS = 8


def thumbnail_side(n_slides: int) -> int:
    """Thumbnail size: big for a pilot cohort, small enough that 1,000 slides stay ~50 MP."""
    return 256 if n_slides <= 64 else 160 if n_slides <= 400 else 96


def _caption(row: pd.Series, tile_cols: Sequence[str]) -> list[str]:
    area = row.get("tissue_area_mm2")
    area_text = "tissue n/a" if area is None or pd.isna(area) else f"tissue {float(area):.1f} mm²"
    tiles = ", ".join(f"{c[len('tiles_'):]} {int(row[c])}" for c in tile_cols if not pd.isna(row[c]))
    status = str(row["status"])
    error = "" if pd.isna(row.get("error")) else str(row.get("error") or "")
    return [f"{row['slide_id']}: {status}", area_text, f"tiles {tiles}" if tiles else error[:40]]


def _thumb(path: Path, side: int) -> Image.Image:
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((side, side))
            return im
    except OSError as err:  # an unreadable picture is drawn as such, never fatal
        log.warning("QC image %s unreadable: %s", path, err)
        return Image.new("RGB", (side, side), (235, 235, 235))


def contact_sheet(summary: pd.DataFrame, images: Sequence[Path | str]) -> Image.Image:
    """The sheet for ``summary`` (``wsi_summary.csv`` rows) and one QC image per row, same order.

    Raises:
        ValueError: a different number of images and rows, or an image whose file name does not
            start with its row's slide ID (the inputs are not in the same order).
    """
    if len(images) != len(summary):
        raise ValueError(f"{len(images)} QC images for {len(summary)} slides of the WSI summary")
    for sid, img in zip(summary["slide_id"].astype(str), images, strict=True):
        if not Path(img).name.startswith(f"{sid}."):
            raise ValueError(f"QC image {img} is not slide {sid}'s: pass the images in the summary's order")
    table = summary.assign(_image=[Path(p) for p in images], _ok=summary["status"].astype(str) == "ok")
    table = table.sort_values("_ok", kind="stable")  # problem slides first, then the sheet's order
    tile_cols = [c for c in summary.columns if str(c).startswith("tiles_")]
    side = thumbnail_side(len(table))
    cols = max(1, min(MAX_COLUMNS, len(table)))
    rows = max(1, math.ceil(len(table) / cols))
    cell_w, cell_h = side + 8, side + 8 + TEXT_LINES * LINE_PX + 6
    sheet = Image.new("RGB", (cols * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for i, (_, row) in enumerate(table.iterrows()):
        x, y = (i % cols) * cell_w, (i // cols) * cell_h
        colour = STATUS_COLOURS.get(str(row["status"]), OTHER_STATUS_COLOUR)
        thumb = _thumb(row["_image"], side)
        draw.rectangle([x + 1, y + 1, x + cell_w - 2, y + side + 6], outline=colour, width=3)
        sheet.paste(thumb, (x + 4 + (side - thumb.width) // 2, y + 4 + (side - thumb.height) // 2))
        for j, line in enumerate(_caption(row, tile_cols)):
            draw.text((x + 4, y + side + 9 + j * LINE_PX), line, fill=colour if j == 0 else (40, 40, 40),
                      font=font)
    return sheet


def write_contact_sheet(wsi_summary: Path, images: Sequence[Path], out: Path) -> None:
    """Read the WSI summary, draw the sheet and write it atomically as PNG."""
    summary = pd.read_csv(wsi_summary, dtype={"slide_id": str})
    sheet = contact_sheet(summary, images)
    write_image(out, sheet)
    n_bad = int((summary["status"].astype(str) != "ok").sum())
    log.info("contact sheet of %d slides (%d not ok) -> %s", len(summary), n_bad, out)
