"""Tissue segmentation on a low-resolution thumbnail (~8 µm/px).

Default ``saturation_otsu``: H&E-stained tissue is *coloured*, glass is grey-white, so Otsu on
HSV saturation separates them even for pale eosin-only tissue, where a grey-level Otsu
(tiatoolbox's ``OtsuTissueMasker``) often loses it. Pen ink is saturated too, so hues of
green/blue markers are removed, as are near-black pixels (folds, dirt, slide label edges).
Morphology then closes gaps, fills small holes (lumina inside tissue) and drops tiny islands
(dust). It is pure numpy/scipy and runs in milliseconds, which keeps segmentation well under
the 0.3 s/slide target; the tiatoolbox maskers are available for comparison (``method``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from duopath.config import SegmentationConfig

log = logging.getLogger(__name__)

# Hue band (0..1 on the HSV circle) of green/blue marker ink (blue inks sit at ~0.58-0.66).
# Haematoxylin sits at ~0.68-0.8 and eosin at ~0.8-0.98; the saturation floor keeps pale
# blue-grey haematoxylin out of it (on CMU-1-Small-Region, 4 of 8,600 tissue pixels fall in it).
PEN_HUE = (0.18, 0.67)
PEN_MIN_SATURATION = 0.25
BLACK_MAX_VALUE = 0.15
OTSU_SAT_BOUNDS = (0.04, 0.15)


@dataclass(frozen=True)
class TissueMask:
    """A boolean tissue mask at ``mpp`` µm/px covering the whole slide.

    ``excluded``: pixels the method removed as marker ink or black before the morphology (same
    shape as ``mask``), so the QC picture can show them; None for a method without that step.
    """

    mask: np.ndarray
    mpp: float
    threshold: float | None
    method: str
    excluded: np.ndarray | None = None

    @property
    def area_mm2(self) -> float:
        return float(self.mask.sum()) * (self.mpp / 1000.0) ** 2

    @property
    def fraction(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of ``values`` in [0, 1]: ``values > t`` is the brighter class."""
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    hist = hist.astype(np.float64)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mu0 = np.divide(m0, w0, out=np.zeros_like(m0), where=w0 > 0)
    mu1 = np.divide(m0[-1] - m0, w1, out=np.zeros_like(m0), where=w1 > 0)
    between = w0 * w1 * (mu0 - mu1) ** 2
    # Upper edge of the last background bin, so that `values > threshold` is the foreground.
    return float(edges[int(np.argmax(between)) + 1])


def rgb_to_hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised RGB (uint8) → H, S, V in [0, 1]."""
    x = rgb.astype(np.float32) / 255.0
    mx = x.max(axis=-1)
    mn = x.min(axis=-1)
    delta = mx - mn
    s = np.divide(delta, mx, out=np.zeros_like(mx), where=mx > 0)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    safe = np.where(delta > 0, delta, 1.0)
    h = np.where(mx == r, ((g - b) / safe) % 6, np.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4))
    h = np.where(delta > 0, h / 6.0, 0.0)
    return h, s, mx


def _disk(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return x * x + y * y <= radius * radius


def remove_small(mask: np.ndarray, min_px: int) -> np.ndarray:
    """Drop connected components (8-connectivity) smaller than ``min_px`` pixels."""
    if min_px <= 1 or not mask.any():
        return mask
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_px
    keep[0] = False
    return keep[labels]


def fill_small_holes(mask: np.ndarray, max_px: int) -> np.ndarray:
    """Fill background components not touching the border and smaller than ``max_px``."""
    if max_px <= 0:
        return mask
    holes, n = ndimage.label(~mask)
    if n == 0:
        return mask
    sizes = np.bincount(holes.ravel(), minlength=n + 1)
    border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
    fill = sizes < max_px
    fill[0] = False
    fill[border] = False
    return mask | fill[holes]


def saturation_otsu_mask(rgb: np.ndarray, mpp: float, cfg: SegmentationConfig) -> TissueMask:
    """Otsu on saturation, minus pen and black, then closing / hole filling / island removal."""
    h, s, v = rgb_to_hsv(rgb)
    s_smooth = ndimage.median_filter(s, size=3)
    candidates = s_smooth[v > BLACK_MAX_VALUE]
    thr = otsu_threshold(candidates) if candidates.size else OTSU_SAT_BOUNDS[1]
    thr = float(np.clip(thr, *OTSU_SAT_BOUNDS))
    pen = (h >= PEN_HUE[0]) & (h <= PEN_HUE[1]) & (s > PEN_MIN_SATURATION)
    black = v <= BLACK_MAX_VALUE
    mask = (s_smooth > thr) & ~black & ~pen
    return TissueMask(_morphology(mask, mpp, cfg), mpp, thr, "saturation_otsu", excluded=pen | black)


def _morphology(mask: np.ndarray, mpp: float, cfg: SegmentationConfig) -> np.ndarray:
    radius = round(cfg.closing_um / mpp)
    if radius >= 1:
        pad = radius + 1
        padded = np.pad(mask, pad)
        padded = ndimage.binary_closing(padded, structure=_disk(radius))
        mask = padded[pad:-pad, pad:-pad]
    px_area = mpp * mpp
    mask = fill_small_holes(mask, int(cfg.max_hole_um2 / px_area))
    return remove_small(mask, int(np.ceil(cfg.min_object_um2 / px_area)))


def tiatoolbox_mask(rgb: np.ndarray, mpp: float, cfg: SegmentationConfig) -> TissueMask:
    """tiatoolbox's Otsu or morphological masker on the same thumbnail (imported lazily: ~9 s)."""
    from tiatoolbox.tools import tissuemask

    if cfg.method == "tiatoolbox_otsu":
        masker = tissuemask.OtsuTissueMasker()
    else:
        masker = tissuemask.MorphologicalMasker(
            mpp=mpp, min_region_size=int(np.ceil(cfg.min_object_um2 / (mpp * mpp)))
        )
    mask = masker.fit_transform(rgb[np.newaxis])[0].astype(bool)
    return TissueMask(_morphology(mask, mpp, cfg), mpp, None, cfg.method)


def segment(rgb: np.ndarray, mpp: float, cfg: SegmentationConfig) -> TissueMask:
    """Segment a thumbnail at ``mpp`` µm/px with the configured method."""
    if cfg.method == "saturation_otsu":
        return saturation_otsu_mask(rgb, mpp, cfg)
    return tiatoolbox_mask(rgb, mpp, cfg)
