"""Reading by µm/px, mpp resolution and per-slide failure handling on real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from duopath.config import SegmentationConfig, TilingConfig
from duopath.slides.reader import SlideError, open_slide
from duopath.slides.stages import segment_slide, tile_slide


def write_plain_tiff(path: Path, with_mpp: bool) -> Path:
    """A small tiled RGB TIFF with tissue-coloured content, optionally without resolution."""
    rng = np.random.default_rng(1)
    img = np.full((1024, 1024, 3), 235, np.uint8)
    img[200:800, 200:800] = (190, 110, 160)
    img += rng.integers(0, 15, img.shape).astype(np.uint8)
    kwargs = {"resolution": (1e4 / 0.5, 1e4 / 0.5), "resolutionunit": "CENTIMETER"} if with_mpp else {}
    tifffile.imwrite(path, img, tile=(256, 256), photometric="rgb", compression="jpeg", **kwargs)
    return path


def test_read_by_mpp_on_cmu(cmu_slide: Path) -> None:
    with open_slide(cmu_slide) as slide:
        assert slide.mpp == pytest.approx(0.499)
        assert slide.mpp_source == "openslide.mpp-x"
        tile = slide.read_square(1000, 1000, 448.0, 224)  # 0.998 µm/px from a 0.499 level
        assert tile.shape == (224, 224, 3) and tile.dtype == np.uint8
        assert slide.level_for_mpp(0.5) == 0
    with open_slide(cmu_slide, mpp_override=0.25) as slide:
        assert slide.mpp == 0.25 and slide.mpp_source == "sample sheet override"


def test_missing_mpp_fails_with_a_hint_unless_overridden(tmp_path: Path) -> None:
    path = write_plain_tiff(tmp_path / "nompp.tiff", with_mpp=False)
    with pytest.raises(SlideError, match=r"nompp\.tiff: no microns-per-pixel.*add an `mpp` column"):
        open_slide(path)
    with open_slide(path, mpp_override=0.5) as slide:
        assert slide.mpp == 0.5
    with open_slide(write_plain_tiff(tmp_path / "mpp.tiff", with_mpp=True)) as slide:
        assert slide.mpp == pytest.approx(0.5)


def test_corrupt_slide_is_skipped_and_recorded(tmp_path: Path) -> None:
    bad = tmp_path / "broken.svs"
    bad.write_bytes(b"not a slide at all" * 100)
    out = {k: tmp_path / f"broken.{k}" for k in ("png", "json", "jpg")}
    meta = segment_slide(bad, "broken", SegmentationConfig(), mask_png=out["png"],
                         mask_json=out["json"], qc_image=out["jpg"])
    assert meta["status"] == "failed" and "OpenSlide cannot open" in meta["error"]
    assert json.loads(out["json"].read_text())["status"] == "failed"
    tiles = tile_slide(out["png"], out["json"], TilingConfig(), tiles_out=tmp_path / "t.parquet")
    assert tiles.empty and pd.read_parquet(tmp_path / "t.parquet").empty
    with pytest.raises(SlideError, match=r"broken\.svs"):
        segment_slide(bad, "broken", SegmentationConfig(), mask_png=out["png"],
                      mask_json=out["json"], qc_image=out["jpg"], on_error="fail")


def test_cmu_segment_and_tile(cmu_slide: Path, tmp_path: Path) -> None:
    meta = segment_slide(cmu_slide, "cmu", SegmentationConfig(), mask_png=tmp_path / "m.png",
                         mask_json=tmp_path / "m.json", qc_image=tmp_path / "qc.jpg")
    assert meta["status"] == "ok" and meta["tissue_area_mm2"] > 0.3
    assert meta["seconds"] < 5
    tiles = tile_slide(tmp_path / "m.png", tmp_path / "m.json", TilingConfig(),
                       tiles_out=tmp_path / "t.parquet", qc_in=tmp_path / "qc.jpg",
                       qc_out=tmp_path / "tiles.jpg")
    counts = tiles["magnification"].value_counts()
    assert counts["10x"] >= 5 and counts["20x"] >= 2 * counts["10x"]
    assert (tmp_path / "tiles.jpg").stat().st_size > 0
    # tiles lie in tissue: the pixels they read are mostly stained, not glass
    with open_slide(cmu_slide) as slide:
        for r in tiles.sample(8, random_state=0).itertuples():
            px = slide.read_square(r.x, r.y, r.size0, 32).reshape(-1, 3).astype(float)
            sat = (px.max(1) - px.min(1)) / np.maximum(px.max(1), 1)
            assert (sat > 0.1).mean() > 0.3
