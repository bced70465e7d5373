"""QC pictures: ~1,000 px, the plain slide under a mask outline, ink left out shown in gold,
every tile grid drawn, and a legend with tile counts and coverage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from duopath.config import SegmentationConfig, TilingConfig
from duopath.slides import qc
from duopath.slides.stages import segment_slide, tile_slide
from duopath.slides.summary import summarise
from duopath.slides.tissue import segment


def _near(img: np.ndarray, colour: tuple[int, int, int], tol: int = 40) -> np.ndarray:
    return (np.abs(img.astype(int) - np.array(colour)).max(axis=-1) <= tol)


def test_cmu_qc_pictures_size_legend_grids_and_summary(cmu_slide: Path, tmp_path: Path) -> None:
    meta = segment_slide(cmu_slide, "cmu", SegmentationConfig(), mask_png=tmp_path / "m.png",
                         mask_json=tmp_path / "m.json", qc_image=tmp_path / "qc.jpg")
    w, h = meta["qc_size"]
    assert max(w, h) == qc.QC_LONG_SIDE  # CMU-1-Small-Region is 2220 × 2967 px: downsampled to the cap
    assert json.loads((tmp_path / "m.json").read_text())["qc_size"] == [w, h]
    mask_pic = Image.open(tmp_path / "qc.jpg")
    assert mask_pic.width >= w and mask_pic.height > h + 40  # legend panel under the picture
    pic = np.asarray(mask_pic.convert("RGB"))[:h, :w]
    assert _near(pic, qc.TISSUE_OUTLINE).sum() > 500  # the mask outline
    assert not _near(pic, (40, 200, 60), 25).any()  # no green tint over the tissue any more

    tiles = tile_slide(tmp_path / "m.png", tmp_path / "m.json", TilingConfig(),
                       tiles_out=tmp_path / "t.parquet", qc_in=tmp_path / "qc.jpg",
                       qc_out=tmp_path / "tiles.jpg")
    tiles_pic = Image.open(tmp_path / "tiles.jpg")
    assert tiles_pic.width >= w and tiles_pic.height > h + 60
    grid = np.asarray(tiles_pic.convert("RGB"))[:h, :w]
    assert _near(grid, qc.GRID_COLOURS[0]).sum() > 1000  # the 10x grid
    # 20x lines: white inside the tissue, where the slide itself is never that white
    assert _near(grid, (255, 255, 255), 3).sum() > 500
    if tiles["partial"].any():
        assert _near(grid, qc.PARTIAL).sum() > 100

    summary = summarise([tmp_path / "m.json"], [tmp_path / "t.parquet"], tmp_path / "s.csv")
    row = summary.iloc[0]
    assert 0.8 < row["coverage_20x"] <= 1.0 and row["coverage_10x"] >= row["coverage_20x"] - 0.05
    assert row["partial_10x"] == int(tiles["partial"].sum()) and row["partial_20x"] == 0
    assert row["tiles_20x"] == int((tiles["magnification"] == "20x").sum())


def test_ink_left_out_is_shown_in_a_colour_ink_does_not_have() -> None:
    """A blue marker stroke next to tissue: left out of the mask and painted gold on the QC."""
    rng = np.random.default_rng(0)
    img = np.full((120, 160, 3), 240, np.uint8) + rng.integers(0, 8, (120, 160, 3)).astype(np.uint8)
    img[30:90, 30:100] = (200, 120, 170)
    img[20:28, 110:150] = (40, 70, 200)  # blue marker
    tm = segment(img, 8.0, SegmentationConfig())
    assert tm.excluded is not None and tm.excluded[22:26, 115:145].all()
    meta = {"slide_id": "s", "tissue_area_mm2": tm.area_mm2, "method": tm.method, "mask_mpp": 8.0}
    picture, geometry = qc.mask_picture(img, 8.0, tm.mask, tm.excluded, meta)
    w, h = geometry["qc_size"]
    assert (w, h) == (160, 120)  # never upscaled past the given image
    pic = np.asarray(picture)[:h, :w]
    stroke = pic[22:26, 115:145]
    assert _near(stroke, qc.EXCLUDED, 60).all()
    assert not _near(pic[40:80, 40:90], qc.EXCLUDED, 60).any()  # tissue is not painted


def test_tiny_tiles_are_tinted_not_outlined() -> None:
    """At 25 µm/px (a 25 mm slide at 1,000 px) a 20x tile is 4.5 px: shown as a tint, not outlined."""
    mask = np.zeros((1000, 1500), bool)
    mask[200:700, 300:900] = True
    from duopath.slides.tiling import build_grids

    tiles = build_grids(mask, 8.0, (48_000, 32_000), 0.25, TilingConfig())
    base = Image.new("RGB", (480, 320), (240, 240, 240))
    meta = {"slide_id": "big", "slide_mpp": 0.25, "mask_mpp": 8.0, "qc_mpp": 25.0, "qc_size": [480, 320]}
    out = qc.tiles_picture(base, tiles, meta, 0.5)
    assert out.width >= 480 and out.height > 320
    tinted = np.asarray(out)[:320, :480]
    assert (tinted[70:220, 100:280] != 240).any(axis=-1).all()  # the tissue (x 96-288, y 64-224 px)
    assert (tinted[250:290, 350:470] == 240).all()  # glass stays plain
    assert isinstance(tiles, pd.DataFrame)
