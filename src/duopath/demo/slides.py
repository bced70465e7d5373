"""Synthesis of one demo slide: an irregular tissue section of real H&E texture on glass.

The layout is decided on a coarse grid (``LABEL_DOWNSAMPLE`` = 16, i.e. 8 µm/px at 0.5 µm/px,
the same grid as pyramid level 2), where smooth random fields give

- the tissue blob: an ellipse whose radius is perturbed by low-frequency noise, and
- the tumour regions: a smooth field thresholded at the quantile that makes the tumour share
  of the tissue equal to the slide's target (which follows the patient's tumour factor).

Those fields are upsampled bilinearly to full resolution so the borders are smooth, and the
texture is a mosaic of real patches (see :mod:`duopath.demo.textures`) with feathered
overlaps. Appearance also carries the factors: tumour texture is more hyperchromatic with the
tumour factor, stroma is slightly more basophilic and holds more immune-like cells (small
dark round nuclei) with the TME factor. A mild per-site stain shift mimics scanner/lab
variation, and an optional pen stroke on the glass exercises segmentation.

Everything is vectorised numpy/PIL/scipy; the only Python loops run over mosaic cells
(hundreds), never over pixels.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from duopath.demo.textures import TextureBank

log = logging.getLogger(__name__)

LABEL_DOWNSAMPLE = 16  # layout / truth-mask grid, = pyramid level 2
CANVAS_MULTIPLE = 256  # level-0 size is a multiple of the TIFF tile (and of 16: exact levels)
MIN_CANVAS_PX = 1024  # so that levels 1 and 2 (downsample 4, 16) are never degenerate
MAX_CANVAS_PX = 200_000_000  # one slide is held in memory; refuse absurd tissue_mm
MARGIN_MM = 0.15  # glass around the tissue's bounding ellipse
OVERLAP_PX = 16  # feathered overlap between neighbouring texture patches
EDGE_GLASS_UM = 40.0  # tissue never comes closer than this to the slide's edge

GLASS_RGB = np.array([237.0, 235.0, 240.0], dtype=np.float32)
LYMPHOCYTE_RGB = np.array([52.0, 34.0, 92.0], dtype=np.float32)
PEN_INKS: dict[str, tuple[float, float, float]] = {
    "blue": (40.0, 70.0, 175.0),
    "green": (35.0, 140.0, 85.0),
}

# Labels of the truth mask.
GLASS, STROMA, TUMOUR, PEN = 0, 1, 2, 3


@dataclass(frozen=True)
class SlideSpec:
    """Everything that decides one slide's pixels (plus ``seed`` for its random stream)."""

    slide_id: str
    seed: int
    mpp: float
    tissue_mm: tuple[float, float]
    tumour_factor: float
    tme_factor: float
    tumour_share: float  # target share of tumour-like tissue
    immune_per_mm2: float  # immune-like cells per mm² of stroma
    site_index: int
    site_seed: int
    pen: str | None = None  # a key of PEN_INKS, or None


@dataclass(frozen=True)
class RenderedSlide:
    """Level-0 pixels and the truth mask on the ``LABEL_DOWNSAMPLE`` grid."""

    rgb: np.ndarray  # (H, W, 3) uint8
    labels: np.ndarray  # (H/16, W/16) uint8: GLASS, STROMA, TUMOUR, PEN
    n_immune: int

    @property
    def tumour_share(self) -> float:
        """Realised share of tumour-like tissue (pen excluded), measured on the mask."""
        tissue = np.count_nonzero((self.labels == STROMA) | (self.labels == TUMOUR))
        return float(np.count_nonzero(self.labels == TUMOUR) / max(tissue, 1))


def canvas_shape(mpp: float, tissue_mm: tuple[float, float]) -> tuple[int, int]:
    """Level-0 ``(height, width)`` in px: tissue plus margins, rounded up to whole tiles."""
    dims = []
    for mm in (tissue_mm[1], tissue_mm[0]):
        px = (mm + 2 * MARGIN_MM) * 1000.0 / mpp
        dims.append(max(MIN_CANVAS_PX, CANVAS_MULTIPLE * math.ceil(px / CANVAS_MULTIPLE)))
    if dims[0] * dims[1] > MAX_CANVAS_PX:
        raise ValueError(
            f"demo tissue_mm={tissue_mm} at {mpp} µm/px needs a {dims[1]}x{dims[0]} px slide; "
            "the demo holds a slide in memory, keep it under 200 Mpx"
        )
    return dims[0], dims[1]


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise with unit standard deviation (a smooth random field)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    return field / max(float(field.std()), 1e-6)


def _upsample(field: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float field to ``(height, width)`` (PIL's C resize: ~10x scipy's zoom)."""
    img = Image.fromarray(np.ascontiguousarray(field, dtype=np.float32))  # mode F
    return np.asarray(img.resize((shape[1], shape[0]), Image.BILINEAR))


def _od_lut(scales: np.ndarray) -> np.ndarray:
    """Per-channel 256-entry LUT that multiplies optical density by ``scales`` (3,).

    Scaling OD per channel is how stain intensity varies (Beer-Lambert), so it changes
    hue/density like a real staining difference would, and costs one table lookup.
    """
    v = (np.arange(256, dtype=np.float64) + 1.0) / 256.0
    lut = 256.0 * v[None, :] ** np.asarray(scales, dtype=np.float64)[:, None] - 1.0
    return np.clip(np.round(lut), 0, 255).astype(np.uint8)


def _apply_lut(patches: np.ndarray, lut: np.ndarray) -> np.ndarray:
    out = np.empty_like(patches)
    for c in range(3):
        out[..., c] = lut[c][patches[..., c]]
    return out


def _feather(patch_px: int) -> np.ndarray:
    """2D weights that sum to exactly 1 wherever neighbouring patches overlap."""
    i = np.arange(patch_px, dtype=np.float32) + 0.5
    ramp = np.minimum(1.0, np.minimum(i / OVERLAP_PX, (patch_px - i) / OVERLAP_PX))
    return (ramp[:, None] * ramp[None, :]).astype(np.float32)


def _layout(
    spec: SlideSpec, rng: np.random.Generator, low: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, float, float, float]:
    """Coarse tissue field (tissue where < 1), tumour field and its threshold, ramp scales."""
    d = LABEL_DOWNSAMPLE
    lh, lw = low
    um_per_low = spec.mpp * d
    yy, xx = np.mgrid[0:lh, 0:lw].astype(np.float32)
    cy = lh / 2 + rng.uniform(-0.03, 0.03) * lh
    cx = lw / 2 + rng.uniform(-0.03, 0.03) * lw
    a = spec.tissue_mm[0] * 1000.0 / um_per_low / 2 * rng.uniform(0.85, 1.0)
    b = spec.tissue_mm[1] * 1000.0 / um_per_low / 2 * rng.uniform(0.85, 1.0)
    theta = rng.uniform(-0.25, 0.25)
    u = (xx - cx) * math.cos(theta) + (yy - cy) * math.sin(theta)
    v = -(xx - cx) * math.sin(theta) + (yy - cy) * math.cos(theta)
    radius = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    lobes = _smooth_noise(rng, low, 160.0 / um_per_low)
    ragged = _smooth_noise(rng, low, 40.0 / um_per_low)
    tissue_field = radius + 0.16 * lobes + 0.04 * ragged
    # Keep a strip of bare glass along the canvas edge whatever the noise did: every slide has
    # background at its corners and borders, as a real scan does.
    border = max(2, round(EDGE_GLASS_UM / um_per_low))
    edge = np.minimum(np.minimum(yy, lh - 1 - yy), np.minimum(xx, lw - 1 - xx))
    tissue_field = np.where(edge < border, np.maximum(tissue_field, 1.5), tissue_field)

    sigma_t = 110.0 / um_per_low
    tumour_field = _smooth_noise(rng, low, sigma_t)
    inside = tissue_field < 1.0
    threshold = float(np.quantile(tumour_field[inside], 1.0 - spec.tumour_share))
    # Ramp widths at full resolution: ~3 px at the tissue edge, ~6 px at tumour borders.
    tissue_gain = min(a, b) * d / 3.0
    tumour_gain = sigma_t * d * math.sqrt(2.0) / 6.0
    return tissue_field, tumour_field, threshold, tissue_gain, tumour_gain


def _mosaic(
    bank: TextureBank,
    spec: SlideSpec,
    rng: np.random.Generator,
    alpha_tissue: np.ndarray,
    alpha_tumour: np.ndarray,
) -> np.ndarray:
    """Tissue texture (float32, H x W x 3) where ``alpha_tissue`` > 0, zero elsewhere.

    Each cell blends a tumour and a stroma patch by ``alpha_tumour``; cells are placed with a
    feathered overlap whose weights sum to one, so no normalisation pass is needed.
    """
    h, w = alpha_tissue.shape
    p = bank.patch_px
    step = p - OVERLAP_PX
    site_rng = np.random.default_rng(spec.site_seed)
    site_scale = 1.0 + site_rng.normal(0.0, 0.05, size=3)
    hyper = float(np.clip(1.0 + 0.08 * spec.tumour_factor, 0.8, 1.25))
    basophil = float(np.clip(1.0 + 0.05 * spec.tme_factor, 0.85, 1.15))
    tumour = _apply_lut(bank.tumour, _od_lut(site_scale * np.array([hyper, hyper, 1.0])))
    stroma = _apply_lut(bank.stroma, _od_lut(site_scale * np.array([basophil, 1.0, 1.0])))
    weight = _feather(p)[..., None]

    acc = np.zeros((h + 2 * p, w + 2 * p, 3), dtype=np.float32)  # padded by p on every side
    n_y = math.ceil((h + OVERLAP_PX) / step)
    n_x = math.ceil((w + OVERLAP_PX) / step)
    for i in range(n_y):
        y0 = i * step - OVERLAP_PX
        ys = slice(max(y0, 0), min(y0 + p, h))
        for j in range(n_x):
            x0 = j * step - OVERLAP_PX
            xs = slice(max(x0, 0), min(x0 + p, w))
            a_tis = alpha_tissue[ys, xs]
            if not a_tis.any():
                continue
            a_tum = np.zeros((p, p), dtype=np.float32)
            a_tum[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = alpha_tumour[ys, xs]
            blend = np.zeros((p, p, 3), dtype=np.float32)
            if a_tum.max() > 0:
                blend += a_tum[..., None] * _dihedral(tumour[rng.integers(len(tumour))], rng)
            if a_tum.min() < 1:
                blend += (1.0 - a_tum[..., None]) * _dihedral(stroma[rng.integers(len(stroma))], rng)
            acc[y0 + p : y0 + 2 * p, x0 + p : x0 + 2 * p] += weight * blend
    return acc[p : p + h, p : p + w]


def _dihedral(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of the 8 rotations/flips: multiplies the bank's variety without new texture."""
    k = int(rng.integers(8))
    out = np.rot90(patch, k % 4)
    return out[:, ::-1] if k >= 4 else out


def _immune_cells(
    spec: SlideSpec, rng: np.random.Generator, labels: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres (y, x) and radii in px of immune-like cells: Poisson in stroma, sparse in tumour."""
    h, w = shape
    area_mm2 = h * w * (spec.mpp / 1000.0) ** 2
    n = int(rng.poisson(spec.immune_per_mm2 * area_mm2))
    y = rng.uniform(0, h, size=n)
    x = rng.uniform(0, w, size=n)
    region = labels[(y // LABEL_DOWNSAMPLE).astype(int), (x // LABEL_DOWNSAMPLE).astype(int)]
    accept = np.where(region == STROMA, 1.0, np.where(region == TUMOUR, 0.15, 0.0))
    keep = rng.uniform(size=n) < accept
    radius = rng.uniform(2.2, 3.4, size=int(keep.sum())) / spec.mpp  # 4.5-7 µm nuclei
    return y[keep], x[keep], radius


def _draw_cells(
    rgb: np.ndarray, y: np.ndarray, x: np.ndarray, radius: np.ndarray, rng: np.random.Generator
) -> None:
    """Paint soft dark round nuclei in place, all at once (one fancy-indexed blend)."""
    if len(y) == 0:
        return
    h, w = rgb.shape[:2]
    r_max = math.ceil(radius.max()) + 1
    oy, ox = np.mgrid[-r_max : r_max + 1, -r_max : r_max + 1]
    oy, ox = oy.ravel(), ox.ravel()
    cy, cx = np.round(y).astype(int), np.round(x).astype(int)
    py = cy[:, None] + oy[None, :]
    px = cx[:, None] + ox[None, :]
    dist = np.hypot(py - y[:, None], px - x[:, None])
    rim = np.clip((radius[:, None] - dist) / 1.5 + 0.5, 0.0, 1.0)  # ~1.5 px soft edge
    alpha = rim * rng.uniform(0.85, 0.98, (len(y), 1))
    ok = (alpha > 0) & (py >= 0) & (py < h) & (px >= 0) & (px < w)
    py, px, alpha = py[ok], px[ok], alpha[ok].astype(np.float32)[:, None]
    tone = LYMPHOCYTE_RGB * rng.uniform(0.8, 1.25, size=(len(y), 1)).astype(np.float32)
    colour = np.broadcast_to(tone[:, None, :], (len(y), len(oy), 3))[ok]
    colour = colour * rng.uniform(0.85, 1.15, size=(len(colour), 1)).astype(np.float32)  # chromatin
    rgb[py, px] = (rgb[py, px] * (1.0 - alpha) + colour * alpha).astype(np.uint8)


def _pen_path(
    spec: SlideSpec, rng: np.random.Generator, labels: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, float]:
    """Level-0 ``(x, y)`` points and width of a wavy marker stroke on the glass below the tissue.

    A real pen mark sits on the glass next to the section (a circle or arrow for the
    pathologist); it goes in the free band under the tissue, so it tests pen removal without
    hiding tissue.
    """
    h, w = shape
    d = LABEL_DOWNSAMPLE
    x0, x1 = 0.28 * w, 0.72 * w
    cols = labels[:, int(x0 // d) : int(x1 // d) + 1]
    rows = np.flatnonzero((cols == STROMA).any(axis=1) | (cols == TUMOUR).any(axis=1))
    top = (rows.max() + 1) * d if len(rows) else h // 2
    band = max(h - top, d)
    width = min(0.45 * MARGIN_MM * 1000.0 / spec.mpp, 0.5 * band)
    xs = np.linspace(x0, x1, 24)
    phase = rng.uniform(0.0, 2.0 * math.pi)
    wave = 0.25 * (band - width) * np.sin(np.linspace(0.0, 2.5, 24) + phase)
    ys = top + 0.5 * band + wave
    return np.stack([xs, ys], axis=1), width


def _draw_path(path: np.ndarray, width_px: float, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Boolean-ish 'L' raster (0/255) of ``path`` drawn at ``1/scale`` of level 0."""
    h, w = shape
    mask = Image.new("L", (max(1, round(w / scale)), max(1, round(h / scale))), 0)
    points = [(float(x / scale), float(y / scale)) for x, y in path]
    width = max(1, round(width_px / scale))
    ImageDraw.Draw(mask).line(points, fill=255, width=width, joint="curve")
    return np.asarray(mask)


def render_slide(spec: SlideSpec, bank: TextureBank) -> RenderedSlide:
    """Pixels and truth mask of one slide, deterministic in ``spec``."""
    rng = np.random.default_rng(spec.seed)
    h, w = canvas_shape(spec.mpp, spec.tissue_mm)
    d = LABEL_DOWNSAMPLE
    low = (h // d, w // d)

    tissue_field, tumour_field, threshold, tissue_gain, tumour_gain = _layout(spec, rng, low)
    tissue_class = np.where(tumour_field >= threshold, TUMOUR, STROMA)
    labels = np.where(tissue_field < 1.0, tissue_class, GLASS).astype(np.uint8)

    alpha_tissue = np.clip((1.0 - _upsample(tissue_field, (h, w))) * tissue_gain + 0.5, 0.0, 1.0)
    alpha_tumour = np.clip((_upsample(tumour_field, (h, w)) - threshold) * tumour_gain + 0.5, 0, 1)
    texture = _mosaic(bank, spec, rng, alpha_tissue, alpha_tumour)
    del alpha_tumour

    # Glass: near-white with a faint illumination gradient and sensor noise (never flat).
    light = _upsample(_smooth_noise(rng, low, low[0] / 4.0), (h, w)) * 1.5
    glass = GLASS_RGB[None, None, :] + light[..., None]
    out = glass + alpha_tissue[..., None] * (texture - glass)
    del texture, glass
    out += rng.integers(-3, 4, size=(h, w, 1), dtype=np.int8)
    rgb = np.clip(out, 0, 255).astype(np.uint8)
    del out

    cy, cx, radius = _immune_cells(spec, rng, labels, (h, w))
    _draw_cells(rgb, cy, cx, radius, rng)

    if spec.pen is not None:
        path, width_px = _pen_path(spec, rng, labels, (h, w))
        stroke = _draw_path(path, width_px, (h, w), 1.0)
        rows = np.flatnonzero(stroke.any(axis=1))  # blend only the stroke's band of rows
        if len(rows):
            band = slice(rows[0], rows[-1] + 1)
            opacity = stroke[band, :, None].astype(np.float32) * (0.85 / 255.0)
            ink = np.asarray(PEN_INKS[spec.pen], dtype=np.float32) / 255.0
            rgb[band] = np.clip(rgb[band] * (1.0 - opacity + opacity * ink), 0, 255).astype(np.uint8)
        labels[_draw_path(path, width_px, (h, w), float(d)) > 0] = PEN
    return RenderedSlide(rgb=rgb, labels=labels, n_immune=len(cy))


def count_tiles(labels: np.ndarray, tile_um: float, mpp: float, min_fraction: float = 0.5) -> int:
    """Grid tiles (origin at level-0 (0, 0)) whose tissue fraction is at least ``min_fraction``.

    Measured on the truth mask, so it predicts what the tiling stage should keep; used to size
    the demo (a budget of a few thousand tiles for the whole cohort).
    """
    cell = tile_um / (mpp * LABEL_DOWNSAMPLE)  # tile side in mask px
    tissue = ((labels == STROMA) | (labels == TUMOUR)).astype(np.float64)
    c = np.pad(tissue.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    n_y = int(labels.shape[0] // cell)
    n_x = int(labels.shape[1] // cell)
    ys = np.round(np.arange(n_y + 1) * cell).astype(int)
    xs = np.round(np.arange(n_x + 1) * cell).astype(int)
    total = c[ys[1:, None], xs[None, 1:]] - c[ys[:-1, None], xs[None, 1:]]
    total = total - c[ys[1:, None], xs[None, :-1]] + c[ys[:-1, None], xs[None, :-1]]
    area = np.diff(ys)[:, None] * np.diff(xs)[None, :]
    return int(np.count_nonzero(total / area >= min_fraction))
