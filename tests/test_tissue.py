"""Tissue segmentation: keeps stained tissue, drops glass, pen ink, black and dust, fills holes."""

from __future__ import annotations

import numpy as np
import pytest

from duopath.config import SegmentationConfig
from duopath.slides.tissue import fill_small_holes, otsu_threshold, remove_small, rgb_to_hsv, segment


def _synthetic(mpp: float = 8.0) -> tuple[np.ndarray, dict[str, tuple[slice, slice]]]:
    """White glass with a pink tissue disc (with a lumen), a blue pen stroke, a black corner, dust."""
    rng = np.random.default_rng(0)
    img = np.full((200, 200, 3), 240, np.uint8) + rng.integers(0, 10, (200, 200, 3)).astype(np.uint8)
    yy, xx = np.mgrid[:200, :200]
    disc = (yy - 100) ** 2 + (xx - 90) ** 2 < 60**2
    img[disc] = (200, 120, 170)  # eosin/haematoxylin pink-purple
    lumen = (yy - 100) ** 2 + (xx - 90) ** 2 < 6**2  # ~ 7,000 µm² at 8 µm/px: a small hole
    img[lumen] = (240, 240, 240)
    img[20:26, 160:195] = (40, 70, 200)  # blue pen
    img[185:, 185:] = (5, 5, 5)  # black corner (label edge)
    img[10:12, 10:12] = (200, 120, 170)  # dust speck, 4 px = 256 µm²
    regions = {"disc": disc, "lumen": lumen}
    return img, regions


def test_synthetic_slide_mask() -> None:
    img, regions = _synthetic()
    tm = segment(img, 8.0, SegmentationConfig())
    m = tm.mask
    assert m[regions["disc"]].mean() > 0.98
    assert m[regions["lumen"]].all(), "small lumen inside tissue is filled"
    assert not m[20:26, 160:195].any(), "pen ink is not tissue"
    assert not m[188:, 188:].any(), "black is not tissue"
    assert not m[8:14, 8:14].any(), "dust speck removed"
    assert tm.area_mm2 == pytest.approx(m.sum() * 0.008**2)


def test_helpers() -> None:
    v = np.concatenate([np.full(100, 0.1), np.full(100, 0.8)])
    t = otsu_threshold(v)
    np.testing.assert_array_equal(v > t, v == 0.8)
    h, s, _ = rgb_to_hsv(np.array([[[255, 0, 0], [0, 0, 255], [255, 255, 255]]], np.uint8))
    np.testing.assert_allclose(h[0], [0.0, 2 / 3, 0.0], atol=1e-6)
    np.testing.assert_allclose(s[0], [1, 1, 0])
    mask = np.zeros((10, 10), bool)
    mask[1:3, 1:3] = True
    mask[5:10, 5:10] = True
    assert remove_small(mask, 5).sum() == 25
    ring = np.ones((7, 7), bool)
    ring[3, 3] = False
    assert fill_small_holes(ring, 2).all()
    assert not fill_small_holes(ring, 1).all()


def test_cmu_slide_saturation_vs_tiatoolbox(cmu_slide) -> None:
    """The real H&E slide: both methods find the same main tissue."""
    from duopath.slides.reader import open_slide

    with open_slide(cmu_slide) as slide:
        thumb, mpp = slide.thumbnail(8.0)
    assert thumb.shape[:2] == (round(2967 * 0.499 / 8), round(2220 * 0.499 / 8))
    ours = segment(thumb, mpp, SegmentationConfig()).mask
    tia = segment(thumb, mpp, SegmentationConfig(method="tiatoolbox_morphological")).mask
    assert 0.2 < ours.mean() < 0.7
    inter = (ours & tia).sum()
    union = (ours | tia).sum()
    assert inter / union > 0.6
