"""Per-tile values (T/E attention, student importance) painted over a slide thumbnail.

Why a helper shared by the trainers and the report: every heatmap must map tiles to thumbnail
pixels the same way as the tiling QC picture does (level-0 px × slide_mpp / thumb_mpp), or a
pathologist compares attention with tissue that is a few tiles off. Tiles are given in
level-0 pixels (top-left corner, side ``size0``), exactly as ``tiles/{cohort}/{slide}.parquet``
stores them, whatever magnification they were read at.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Colormap, ListedColormap
from numpy.typing import ArrayLike
from PIL import Image

Scale = Literal["minmax", "rank"]


def _normalise(values: np.ndarray, scale: Scale, vmin: float | None, vmax: float | None) -> np.ndarray:
    """Values to [0, 1]. ``rank``: percentile ranks, for attention whose few huge weights would
    otherwise leave every other tile the same colour; ``minmax``: linear between vmin and vmax."""
    if scale == "rank":
        if vmin is not None or vmax is not None:
            raise ValueError("vmin/vmax apply to scale='minmax' only")
        order = values.argsort(kind="stable")
        ranks = np.empty(values.size)
        ranks[order] = np.arange(values.size)
        # ties share their mean rank so equal values get equal colours
        _, inverse = np.unique(values, return_inverse=True)
        ranks = np.bincount(inverse, ranks)[inverse] / np.bincount(inverse)[inverse]
        return ranks / max(values.size - 1, 1)
    if scale != "minmax":
        raise ValueError(f"scale must be 'minmax' or 'rank', got {scale!r}")
    lo = float(values.min()) if vmin is None else float(vmin)
    hi = float(values.max()) if vmax is None else float(vmax)
    if hi < lo:
        raise ValueError(f"vmax {hi} < vmin {lo}")
    if hi == lo:
        return np.full(values.size, 0.5)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0)


def heatmap_overlay(
    thumbnail_rgb: ArrayLike | Image.Image,
    tile_xy_level0: ArrayLike,
    tile_size0: float | ArrayLike,
    values: ArrayLike,
    slide_mpp: float,
    thumb_mpp: float,
    *,
    alpha: float = 0.6,
    cmap: str | Colormap = "viridis",
    scale: Scale = "minmax",
    vmin: float | None = None,
    vmax: float | None = None,
    tissue: np.ndarray | None = None,
) -> Image.Image:
    """Blend the colour of each tile's value over the thumbnail; returns an RGB PIL image.

    Args:
        thumbnail_rgb: [H, W, 3] uint8 (or a PIL image) at ``thumb_mpp`` µm/px.
        tile_xy_level0: [N, 2] top-left (x, y) of each tile in level-0 pixels.
        tile_size0: tile side in level-0 pixels, one number or one per tile.
        values: [N] values; NaN tiles are left unpainted.
        slide_mpp: level-0 µm/px of the slide; ``thumb_mpp``: µm/px of the thumbnail.
        alpha: opacity of the colour on painted pixels (0 = thumbnail only, 1 = colour only).
        scale: ``minmax`` (optionally fixed by vmin/vmax, e.g. to share a colour scale between
            the T and E maps of one slide) or ``rank`` (percentiles).
        tissue: bool [H, W] at the thumbnail's size; colour only where it is True, so a tile
            that is partly glass (a 10x partial parent, a tissue edge) does not colour the glass.

    Overlapping tiles (e.g. 10x and nested 20x tiles) are averaged per pixel.
    """
    img = np.asarray(
        thumbnail_rgb.convert("RGB") if isinstance(thumbnail_rgb, Image.Image) else thumbnail_rgb
    )
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"thumbnail must be a uint8 [H, W, 3] RGB array, got {img.dtype} {img.shape}")
    xy = np.asarray(tile_xy_level0, dtype=float)
    v = np.asarray(values, dtype=float)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"tile_xy_level0 must be [N, 2], got shape {xy.shape}")
    if v.shape != (xy.shape[0],):
        raise ValueError(f"need one value per tile: {xy.shape[0]} tiles, values of shape {v.shape}")
    size = np.broadcast_to(np.asarray(tile_size0, dtype=float), (xy.shape[0],))
    if not np.isfinite(xy).all() or not (np.isfinite(size) & (size > 0)).all():
        raise ValueError("tile coordinates must be finite and tile sizes positive")
    for name, mpp in (("slide_mpp", slide_mpp), ("thumb_mpp", thumb_mpp)):
        if not (math.isfinite(mpp) and mpp > 0):
            raise ValueError(f"{name} must be a positive number, got {mpp}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")

    h, w = img.shape[:2]
    s = slide_mpp / thumb_mpp  # level-0 px -> thumbnail px
    keep = np.isfinite(v)
    total = np.zeros((h, w))
    count = np.zeros((h, w))
    if keep.any():
        norm = _normalise(v[keep], scale, vmin, vmax)
        # floor / ceil: neighbouring tiles meet or overlap by a pixel (averaged), never leave a
        # one-pixel gap of bare slide between them
        x0 = np.clip(np.floor(xy[keep, 0] * s).astype(int), 0, w)
        y0 = np.clip(np.floor(xy[keep, 1] * s).astype(int), 0, h)
        x1 = np.clip(np.maximum(np.ceil((xy[keep, 0] + size[keep]) * s).astype(int), x0 + 1), 0, w)
        y1 = np.clip(np.maximum(np.ceil((xy[keep, 1] + size[keep]) * s).astype(int), y0 + 1), 0, h)
        for a, b, c, d, val in zip(y0, y1, x0, x1, norm, strict=True):
            total[a:b, c:d] += val
            count[a:b, c:d] += 1
    painted = count > 0
    if tissue is not None:
        if tissue.shape != (h, w):
            raise ValueError(f"tissue mask {tissue.shape} is not the thumbnail's size {(h, w)}")
        painted &= tissue
    out = img.astype(float)
    if painted.any():
        cm = colormaps[cmap] if isinstance(cmap, str) else cmap
        colour = cm(total[painted] / count[painted])[:, :3] * 255.0
        out[painted] = (1.0 - alpha) * out[painted] + alpha * colour
    return Image.fromarray(np.clip(np.round(out), 0, 255).astype(np.uint8), mode="RGB")


def rank_scale(values: ArrayLike) -> np.ndarray:
    """Percentile ranks in [0, 1] of the finite values (ties share their mean rank); NaN stays NaN.

    Computed once over a whole bag, then painted per slide with ``vmin=0, vmax=1``, the colours of
    a patient's several slides stay comparable (the hottest tile of the patient is the top colour,
    not the hottest tile of each slide).
    """
    v = np.asarray(values, dtype=float).ravel()
    out = np.full(v.shape, np.nan)
    keep = np.isfinite(v)
    if keep.any():
        out[keep] = _normalise(v[keep], "rank", None, None)
    return out


@dataclass(frozen=True)
class TileMap:
    """One per-tile map to paint: ``values`` [N] and the ``heatmap_overlay`` keywords (colours).

    ``raw``: the values before rank scaling (None for a categorical map); ``categories``: the
    number of classes of a categorical map (0 for a continuous one).
    """

    values: np.ndarray
    style: dict = field(default_factory=dict)
    raw: np.ndarray | None = None
    categories: int = 0

    def subset(self, rows: np.ndarray) -> TileMap:
        return TileMap(self.values[rows], self.style, None if self.raw is None else self.raw[rows],
                       self.categories)


SEQUENTIAL_CMAP = "viridis"
"""Perceptually uniform and sequential: the lowest and the highest tiles can never look alike
(turbo, the former map, is dark at both ends)."""

RANK_STYLE = {"cmap": SEQUENTIAL_CMAP, "vmin": 0.0, "vmax": 1.0}

CLUSTER_COLOURS = ["#E69F00", "#0072B2", "#009E73", "#CC79A7", "#F0E442", "#56B4E9", "#D55E00",
                   "#000000"]
"""Okabe-Ito: categorical colours told apart with every common colour-vision deficiency (the
former tab10 pair, blue and cyan, were not); beyond 8 prototypes colours repeat."""


def cluster_cmap(n_prototypes: int) -> ListedColormap:
    """One colour per prototype (value k / (n - 1) falls in the k-th of n equal bins)."""
    n = max(int(n_prototypes), 1)
    return ListedColormap([CLUSTER_COLOURS[k % len(CLUSTER_COLOURS)] for k in range(n)])


def attention_maps(maps: Mapping[str, ArrayLike]) -> dict[str, TileMap]:
    """Rank-scaled maps with one colour map (the teacher's T and E attention, the student's ω).

    Each map is ranked on its own: T and E weights differ in spread, and a shared linear scale
    would leave one of them a uniform colour; ranks show where each subspace looked. The raw
    values stay in ``raw`` so a figure can state their range (``heatmap_figure``).
    """
    return {name: TileMap(rank_scale(v), RANK_STYLE, np.asarray(v, dtype=float).ravel())
            for name, v in maps.items()}


def student_maps(omega: ArrayLike, clusters: ArrayLike, n_prototypes: int) -> dict[str, TileMap]:
    """The student's ``omega`` (token importance ω, rank-scaled) and ``clusters`` (DPC-KNN
    prototype of each tile, one categorical colour each; -1 = unassigned, left unpainted)."""
    c = np.asarray(clusters, dtype=float)
    return {
        **attention_maps({"omega": omega}),
        "clusters": TileMap(np.where(c >= 0, c, np.nan),
                            {"cmap": cluster_cmap(n_prototypes), "vmin": 0.0,
                             "vmax": float(max(n_prototypes - 1, 1))}, None, int(n_prototypes)),
    }


def paint_maps(
    thumbnail_rgb: ArrayLike | Image.Image,
    tile_xy_level0: ArrayLike,
    tile_size0: float | ArrayLike,
    maps: Mapping[str, TileMap],
    slide_mpp: float,
    thumb_mpp: float,
    tissue: np.ndarray | None = None,
) -> dict[str, Image.Image]:
    """Every map of one slide over its thumbnail (same tiles, same mapping): name → RGB image."""
    return {
        name: heatmap_overlay(thumbnail_rgb, tile_xy_level0, tile_size0, m.values, slide_mpp, thumb_mpp,
                              tissue=tissue, **m.style)
        for name, m in maps.items()
    }


def tissue_of(thumbnail_rgb: np.ndarray, thumb_mpp: float, seg_mpp: float = 8.0) -> np.ndarray:
    """The tissue of a heatmap's thumbnail, at its size: where tile colours may go.

    Segmented like the pipeline does (``slides.tissue.segment``, default settings, at
    ``seg_mpp``) and resized back; a heatmap only needs it to keep colour off the glass.
    """
    from duopath.config import SegmentationConfig
    from duopath.slides.qc import resample
    from duopath.slides.tissue import segment

    h, w = thumbnail_rgb.shape[:2]
    if thumb_mpp < seg_mpp:
        small, mpp = resample(np.asarray(thumbnail_rgb), (w, h), thumb_mpp, seg_mpp)
    else:
        small, mpp = np.asarray(thumbnail_rgb), thumb_mpp
    mask = segment(small, mpp, SegmentationConfig()).mask
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.NEAREST)) > 0


def read_thumbnail(
    slide_path: Path | str, slide_mpp: float, thumb_mpp: float | None = None, *, max_side: int = 1200
) -> tuple[np.ndarray, float, float]:
    """(RGB thumbnail, slide_mpp, thumb_mpp) read from the slide file itself (no QC tint).

    ``slide_mpp`` is the level-0 µm/px the tiles were cut with (the feature store's), passed to
    OpenSlide as the override so the thumbnail and the tiles share one scale even for a slide
    whose header lacks an mpp. ``thumb_mpp`` None: the long side is ``max_side`` px (a figure a
    pathologist can read), but never finer than 1 µm/px (a 20x tile is then 112 px already).
    Raises ``duopath.slides.reader.SlideError`` for a missing or unreadable file.
    """
    from duopath.slides.reader import open_slide

    with open_slide(slide_path, slide_mpp) as slide:
        if thumb_mpp is None:
            long_um = max(slide.dimensions) * slide.mpp
            thumb_mpp = max(long_um / max_side, 1.0)
        rgb, got = slide.thumbnail(thumb_mpp)
        return rgb, slide.mpp, got


def slide_thumbnail(mask_json: Path | str, thumbnail: Path | str) -> tuple[np.ndarray, float, float]:
    """(RGB thumbnail, slide_mpp, thumb_mpp) from ``masks/{cohort}/{slide}.json`` and the QC image.

    The QC overlay ``qc/{cohort}/{slide}.mask.jpg`` is drawn at the mask's resolution
    (``mask_mpp``), so the JSON's ``mask_mpp`` is the thumbnail's µm/px.
    """
    meta = json.loads(Path(mask_json).read_text())
    if meta.get("status", "ok") != "ok":
        raise ValueError(f"{mask_json}: slide status {meta.get('status')!r}: {meta.get('error')}")
    rgb = np.asarray(Image.open(thumbnail).convert("RGB"))
    return rgb, float(meta["slide_mpp"]), float(meta["mask_mpp"])
