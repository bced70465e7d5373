"""Pyramidal, JPEG-tiled, OpenSlide-readable TIFF writer.

Why this exact layout: OpenSlide's generic-TIFF driver only sees pyramid levels stored as
top-level IFDs (not SubIFDs), requires every level to be tiled, and takes the microns per
pixel from XResolution/YResolution when ResolutionUnit is centimetre (``openslide.mpp-x``).
Levels are 1, 4, 16 (4x steps, like Aperio), stopped once a level would be tiny. The files
carry no timestamp so two writes of the same pixels are byte-identical.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from duopath.io import atomic_path

log = logging.getLogger(__name__)

TILE_PX = 256
LEVEL_STEP = 4
MAX_LEVELS = 3  # downsamples 1, 4, 16
MIN_LEVEL_PX = 64  # no level whose shorter side is below this


def pyramid(rgb: np.ndarray) -> list[np.ndarray]:
    """Level 0 and its 4x box-filtered reductions (PIL ``reduce``: exact block means, in C)."""
    levels = [rgb]
    while len(levels) < MAX_LEVELS:
        h, w = levels[-1].shape[:2]
        if min(h, w) // LEVEL_STEP < MIN_LEVEL_PX:
            break
        levels.append(np.asarray(Image.fromarray(levels[-1]).reduce(LEVEL_STEP)))
    return levels


def write_pyramidal_tiff(
    dest: Path | str, rgb: np.ndarray, mpp: float, *, quality: int = 85, description: str = ""
) -> list[tuple[int, int]]:
    """Write ``rgb`` (H, W, 3 uint8) atomically as a tiled JPEG pyramid; return level (w, h)."""
    import tifffile  # local: keep `import duopath.demo` light for Snakemake's DAG parsing

    levels = pyramid(rgb)
    with atomic_path(dest) as tmp, tifffile.TiffWriter(tmp) as tif:
        for i, level in enumerate(levels):
            downsample = rgb.shape[1] / level.shape[1]
            px_per_cm = 1e4 / (mpp * downsample)
            tif.write(
                level,
                photometric="rgb",
                tile=(TILE_PX, TILE_PX),
                compression="jpeg",
                compressionargs={"level": quality},
                resolution=(px_per_cm, px_per_cm),
                resolutionunit="CENTIMETER",
                subfiletype=0 if i == 0 else 1,  # 1 = reduced-resolution image
                description=description if i == 0 else None,
                software="duopath demo",
                metadata=None,
            )
    dims = [(lv.shape[1], lv.shape[0]) for lv in levels]
    log.debug("wrote %s: levels %s at %.3f µm/px", dest, dims, mpp)
    return dims
