"""QC pictures of segmentation and tiling: can a reader check the mask and the tiles at a glance?

What each picture must let one check, and how:

* **The tissue itself**: the plain slide underneath, never tinted, at about ``QC_LONG_SIDE`` px
  on the long side (read from the slide when the mask's thumbnail is coarser than that; never
  finer than level 0, never larger than the cap).
* **The mask**: its outline only, in orange, a colour neither H&E nor marker ink takes.
* **What was left out as ink / black** (``TissueMask.excluded`` minus the final mask): filled
  in gold, not green, so marker ink and its exclusion cannot be confused.
* **The tiles**: every magnification's grid (coarsest navy, finer white), partial parents
  (kept for their finer tiles, below ``min_tissue_fraction`` themselves) in red; a grid whose
  tiles would be under ``MIN_OUTLINE_PX`` wide is shown as a tint, and the legend says so.
* **Numbers**: a legend panel under the picture with tile counts, partial tiles, coverage
  (tissue under the finest tiles / tissue area) and a scale bar in the picture.

The mask picture (``qc/{cohort}/{slide}.mask.jpg``) is the base of the tiles picture: the tile
stage has no slide access, so the mask JSON records where the picture part ends (``qc_size``)
and its µm/px (``qc_mpp``); the tile stage crops it and draws the grids and its own legend.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

QC_LONG_SIDE = 1000
"""Long side of the picture part of a QC image, in px (a cap: small slides are not upscaled
past level 0)."""

MIN_OUTLINE_PX = 6.0
"""Tiles narrower than this on the QC picture are shown as a tint, not outlined."""

TISSUE_OUTLINE = (255, 140, 0)
EXCLUDED = (255, 215, 0)
PARTIAL = (220, 20, 60)
GRID_COLOURS = [(20, 40, 140), (255, 255, 255), (0, 0, 0)]
LEGEND_BG = (250, 250, 250)


@functools.lru_cache(maxsize=8)
def _font(size: int = 14) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """DejaVu Sans (shipped with matplotlib, a dependency): PIL's default font has no 'µ' or '²'."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    try:
        return ImageFont.truetype(str(path), size)
    except OSError:
        return ImageFont.load_default(size=size)


def qc_target_mpp(slide_dims: tuple[int, int], slide_mpp: float) -> float:
    """µm/px that puts the slide's long side at ``QC_LONG_SIDE`` px, never finer than level 0."""
    return max(max(slide_dims) * slide_mpp / QC_LONG_SIDE, slide_mpp)


def fit_long_side(rgb: np.ndarray, mpp: float, long_side: int = QC_LONG_SIDE) -> tuple[np.ndarray, float]:
    """Downsample ``rgb`` (at ``mpp``) so its long side is at most ``long_side``; (image, new mpp)."""
    h, w = rgb.shape[:2]
    if max(h, w) <= long_side:
        return rgb, mpp
    f = long_side / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    out = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))
    return out, mpp * w / size[0]


def resample(rgb: np.ndarray, slide_dims: tuple[int, int], slide_mpp: float, target_mpp: float
             ) -> tuple[np.ndarray, float]:
    """``rgb`` (the whole slide, finer than ``target_mpp``) at the size ``Slide.thumbnail`` gives
    for ``target_mpp``; (image, exact mpp). Saves a second read of the slide when the QC picture
    is finer than the mask's thumbnail."""
    w0, h0 = slide_dims
    size = (max(1, round(w0 * slide_mpp / target_mpp)), max(1, round(h0 * slide_mpp / target_mpp)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR)), w0 * slide_mpp / size[0]


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 0


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, iterations=max(1, width), border_value=0)


def scale_bar(draw: ImageDraw.ImageDraw, mpp: float, size: tuple[int, int]) -> float:
    """A labelled bar of a round length (≈ a fifth of the width) at the bottom left; its µm."""
    w, h = size
    target = w * mpp / 5
    um = 10 ** math.floor(math.log10(target))
    for step in (5, 2, 1):
        if step * um <= target:
            um *= step
            break
    px = um / mpp
    x0, y0 = 10, h - 14
    draw.rectangle([x0 - 4, y0 - 20, x0 + px + 4, y0 + 8], fill=(255, 255, 255))
    draw.rectangle([x0, y0, x0 + px, y0 + 4], fill=(0, 0, 0))
    label = f"{um / 1000:g} mm" if um >= 1000 else f"{um:g} µm"
    draw.text((x0, y0 - 18), label, fill=(0, 0, 0), font=_font(13))
    return um


def legend_panel(width: int, title: str, items: Sequence[tuple[tuple[int, int, int] | None, str]],
                 *, swatch: str = "fill") -> Image.Image:
    """A white panel: a bold-ish title line, then one line per item (colour swatch + text)."""
    font, line = _font(14), 20
    width = max(width, 360)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines: list[tuple[tuple[int, int, int] | None, str]] = []
    for colour, text in [(None, title), *items]:
        words, cur = text.split(), ""
        for wd in words:  # wrap to the panel width
            nxt = f"{cur} {wd}".strip()
            if probe.textlength(nxt, font=font) > width - 40 and cur:
                lines.append((colour, cur))
                colour, cur = None, wd
            else:
                cur = nxt
        lines.append((colour, cur))
    img = Image.new("RGB", (width, 10 + line * len(lines)), LEGEND_BG)
    draw = ImageDraw.Draw(img)
    for i, (colour, text) in enumerate(lines):
        y = 6 + i * line
        if colour is not None:
            box = [8, y + 3, 22, y + 15]
            if swatch == "fill":
                draw.rectangle(box, fill=colour, outline=(90, 90, 90))
            else:  # a grid line colour on a mid-grey square, so white lines show too
                draw.rectangle(box, fill=(150, 150, 150))
                draw.rectangle(box, outline=colour, width=2)
        draw.text((30 if i else 8, y), text, fill=(0, 0, 0), font=font)
    return img


def stack(picture: Image.Image, panel: Image.Image) -> Image.Image:
    """The picture with its legend panel underneath (panel width wins if wider)."""
    w = max(picture.width, panel.width)
    out = Image.new("RGB", (w, picture.height + panel.height), (255, 255, 255))
    out.paste(picture, (0, 0))
    out.paste(panel, (0, picture.height))
    return out


def mask_picture(rgb: np.ndarray, rgb_mpp: float, mask: np.ndarray, excluded: np.ndarray | None,
                 meta: dict) -> tuple[Image.Image, dict]:
    """The segmentation QC image and its geometry ``{"qc_mpp", "qc_size"}`` (for the tile stage).

    ``rgb`` is the plain slide at ``rgb_mpp`` (downsampled here to the cap); ``mask`` and
    ``excluded`` are at the mask's resolution and are resized to the picture (nearest).
    """
    rgb, mpp = fit_long_side(rgb, rgb_mpp)
    h, w = rgb.shape[:2]
    m = _resize_mask(mask, (w, h))
    out = rgb.astype(np.float32)
    n_excl_mm2 = 0.0
    if excluded is not None:
        left_out = excluded & ~mask
        n_excl_mm2 = float(left_out.sum()) * (meta["mask_mpp"] / 1000.0) ** 2
        e = _resize_mask(left_out, (w, h))
        out[e] = 0.2 * out[e] + 0.8 * np.array(EXCLUDED, np.float32)
    width = max(1, round(max(w, h) / 500))
    out[_outline(m, width)] = TISSUE_OUTLINE
    pic = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    scale_bar(ImageDraw.Draw(pic), mpp, (w, h))
    items: list[tuple[tuple[int, int, int] | None, str]] = [
        (TISSUE_OUTLINE, f"tissue mask outline: {meta['tissue_area_mm2']:.2f} mm² "
                         f"({meta['method']}, mask at {meta['mask_mpp']:.1f} µm/px)"),
    ]
    if excluded is None:
        items.append((None, f"no ink / black exclusion with {meta['method']}"))
    else:
        items.append((EXCLUDED, f"left out as marker ink or black: {n_excl_mm2:.2f} mm²"))
    title = f"{meta['slide_id']}: segmentation QC (picture at {mpp:.2f} µm/px)"
    return stack(pic, legend_panel(w, title, items)), {"qc_mpp": mpp, "qc_size": [w, h]}


def _grid_lines(draw: ImageDraw.ImageDraw, tiles: pd.DataFrame, s: float, colour: tuple[int, int, int],
                width: int) -> None:
    for x, y, size0 in tiles[["x", "y", "size0"]].itertuples(index=False):
        draw.rectangle([x * s, y * s, (x + size0) * s - 1, (y + size0) * s - 1], outline=colour, width=width)


def tiles_picture(base: Image.Image, tiles: pd.DataFrame, meta: dict, min_tissue_fraction: float
                  ) -> Image.Image:
    """The tiling QC image: the segmentation picture's image part with every grid and a legend.

    ``base`` is the segmentation QC image; its picture part is ``meta["qc_size"]`` at
    ``meta["qc_mpp"]`` (older masks without them: the whole image at ``mask_mpp``).
    """
    if "qc_size" in meta:
        w, h = meta["qc_size"]
        pic, mpp = base.crop((0, 0, w, h)).convert("RGB"), float(meta["qc_mpp"])
    else:
        pic, mpp = base.convert("RGB"), float(meta["mask_mpp"])
    s = float(meta["slide_mpp"]) / mpp  # level-0 px -> picture px
    coverage = tiles.attrs.get("coverage", {})
    mags = list(dict.fromkeys(tiles["magnification"]))
    per_level: dict[int, list[tuple[tuple[int, int, int] | None, str]]] = {}
    tint = np.zeros((pic.height, pic.width), bool)
    draw = ImageDraw.Draw(pic)
    order = list(range(len(mags)))[::-1]  # finest first, so coarse lines stay on top
    for level in order:
        mag = mags[level]
        t = tiles[tiles["magnification"] == mag]
        colour = GRID_COLOURS[min(level, len(GRID_COLOURS) - 1)]
        px = float(t["size0"].iloc[0]) * s
        um = float(t["size_um"].iloc[0])
        n_partial = int(t["partial"].sum()) if "partial" in t else 0
        cov = coverage.get(mag)
        text = f"{mag} tiles ({um:g} µm, {px:.0f} px here): {len(t)}"
        if cov is not None:
            text += f"; they cover {cov:.1%} of the tissue area"
        if px >= MIN_OUTLINE_PX:
            full = t[~t["partial"]] if n_partial else t
            _grid_lines(draw, full, s, colour, 2 if level == 0 else 1)
            if n_partial:
                _grid_lines(draw, t[t["partial"]], s, PARTIAL, 2)
        else:
            for x, y, size0 in t[["x", "y", "size0"]].itertuples(index=False):
                tint[round(y * s): round((y + size0) * s), round(x * s): round((x + size0) * s)] = True
            text += " (too small to outline at this scale: shown as a blue tint)"
        items = per_level.setdefault(level, [(colour, text)])
        if n_partial:
            items.append((PARTIAL, f"{n_partial} {mag} tiles kept as partial parents: under "
                                   f"{min_tissue_fraction:.0%} tissue themselves, kept for the "
                                   f"finer tiles inside them"))
    if tint.any():
        arr = np.asarray(pic).astype(np.float32)
        arr[tint] = 0.7 * arr[tint] + 0.3 * np.array((40, 90, 220), np.float32)
        pic = Image.fromarray(arr.astype(np.uint8))
    scale_bar(ImageDraw.Draw(pic), mpp, pic.size)
    items = [it for level in sorted(per_level) for it in per_level[level]]
    items.append((TISSUE_OUTLINE, "tissue mask outline"))
    title = f"{meta['slide_id']}: tiling QC, {len(tiles)} tiles"
    return stack(pic, legend_panel(pic.width, title, items, swatch="outline"))
