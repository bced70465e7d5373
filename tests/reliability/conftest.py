"""Hostile inputs made on the fly: demo-style slides that are blank, tiny, without mpp,
truncated, or whose tile data is damaged behind an intact header."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from duopath.demo.tiff import write_pyramidal_tiff

MPP = 0.5


def tissue_rgb(px: int = 1536, seed: int = 0) -> np.ndarray:
    """Glass with a pink square of 'tissue' in the middle (Otsu on saturation finds it)."""
    rng = np.random.default_rng(seed)
    img = np.full((px, px, 3), 235, np.uint8)
    lo, hi = px // 5, px - px // 5
    img[lo:hi, lo:hi] = (190, 110, 160)
    return (img + rng.integers(0, 20, img.shape)).astype(np.uint8)


def write_slide(path: Path, rgb: np.ndarray | None = None) -> Path:
    """A JPEG-tiled pyramidal TIFF exactly as the demo writes them (levels 1, 4, 16)."""
    write_pyramidal_tiff(path, tissue_rgb() if rgb is None else rgb, MPP)
    return path


def damage_tiles(src: Path, dest: Path, level: int) -> Path:
    """Copy ``src`` and overwrite the JPEG data of every tile of one pyramid level with noise.

    The TIFF header and IFDs stay valid, so OpenSlide opens the file; only decoding that
    level's pixels fails (level 0: in embed; the thumbnail level: in segment).
    """
    data = bytearray(src.read_bytes())
    with tifffile.TiffFile(src) as tif:
        page = tif.pages[level]
        spans = list(zip(page.dataoffsets, page.databytecounts, strict=True))
    rng = np.random.default_rng(level)
    for offset, count in spans:
        data[offset + 2 : offset + count] = rng.integers(0, 256, count - 2, dtype=np.uint8).tobytes()
    dest.write_bytes(bytes(data))
    return dest


@pytest.fixture(scope="session")
def bad_slides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One good slide and one of every kind of bad slide (each a separate file)."""
    d = tmp_path_factory.mktemp("bad_slides")
    # 2 mm wide: large enough that segmentation and its QC picture read pyramid level 1
    # (2 µm/px), as on a real slide, not level 0 -- so level-0 damage shows only in embed
    good = write_slide(d / "good.tiff", tissue_rgb(4096))
    size = good.stat().st_size
    slides = {"good": good}
    slides["blank"] = write_slide(d / "blank.tiff", np.full((1024, 1024, 3), 240, np.uint8))
    slides["tiny"] = write_slide(d / "tiny.tiff", tissue_rgb(48))
    slides["damaged_full_res"] = damage_tiles(good, d / "damaged_full_res.tiff", level=0)
    slides["damaged_thumbnail"] = damage_tiles(good, d / "damaged_thumbnail.tiff", level=1)
    slides["truncated"] = d / "truncated.tiff"
    slides["truncated"].write_bytes(good.read_bytes()[: size // 3])
    slides["zero_bytes"] = d / "zero_bytes.tiff"
    slides["zero_bytes"].write_bytes(b"")
    slides["not_a_slide"] = d / "not_a_slide.svs"
    slides["not_a_slide"].write_bytes(b"this is not a slide" * 50)
    slides["no_mpp"] = d / "no_mpp.tiff"
    tifffile.imwrite(slides["no_mpp"], tissue_rgb(512), tile=(256, 256), photometric="rgb",
                     compression="jpeg")
    return slides
