"""Benchmark inputs made on the fly: a large pyramidal H&E-textured slide and random-weight checkpoints.

Why synthetic: the GPU machine has no network and no slides, and throughput depends on the
*shape* of the work (pixels decoded per tile, model size), not on what the tissue shows. The
slide is painted with real H&E texture patches (duopath.demo.textures, from the CMU sample) so
JPEG decoding costs what it costs on a real scan, written as a tiled JPEG pyramid (256 px tiles,
YCbCr 4:2:0 like most scanners, levels 1/4/16) that OpenSlide reads like the demo slides. Tiles are
JPEG-encoded here with PIL and written pre-encoded, so no imagecodecs is needed on that machine.

Checkpoints: the registry's own local-weights path is what is timed, so random weights of the
right architecture are saved to a file and loaded back through ``load_encoder``.
"""

from __future__ import annotations

import io
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger("bench")

TILE = 256
LEVEL_STEP = 4


def _paint(height: int, width: int, margin: int, rng: np.random.Generator) -> np.ndarray:
    """White glass with a rectangle of H&E texture (random patches, flips and rotations)."""
    from duopath.demo.textures import load_texture_bank

    bank = load_texture_bank(0.5)
    patches = np.concatenate([bank.tumour, bank.stroma])
    p = bank.patch_px
    canvas = np.full((height, width, 3), 242, dtype=np.uint8)
    for y in range(margin, height - margin, p):
        for x in range(margin, width - margin, p):
            patch = np.rot90(patches[rng.integers(len(patches))], k=int(rng.integers(4)))
            h, w = min(p, height - margin - y), min(p, width - margin - x)
            canvas[y : y + h, x : x + w] = patch[:h, :w]
    return canvas


def _jpeg_tiles(level: np.ndarray, quality: int, pool: ThreadPoolExecutor) -> list[bytes]:
    h, w = level.shape[:2]

    def encode(yx: tuple[int, int]) -> bytes:
        y, x = yx
        tile = np.full((TILE, TILE, 3), 242, dtype=np.uint8)
        part = level[y : y + TILE, x : x + TILE]
        tile[: part.shape[0], : part.shape[1]] = part
        buf = io.BytesIO()
        Image.fromarray(tile).save(buf, "JPEG", quality=quality)  # YCbCr 4:2:0
        return buf.getvalue()

    return list(pool.map(encode, [(y, x) for y in range(0, h, TILE) for x in range(0, w, TILE)]))


def make_slide(dest: Path, n_tiles_20x: int, *, mpp: float = 0.5, seed: int = 0,
               quality: int = 80, threads: int = 8) -> dict:
    """Write a square slide holding about ``n_tiles_20x`` 20x (112 µm) tiles of tissue.

    ``mpp`` 0.5 is a 20x scan (a 20x tile is read at level 0 without resizing); 0.25 a 40x scan
    (four times the pixels decoded per tile). Returns the slide's facts, with the seconds taken.
    """
    import tifffile

    t0 = time.perf_counter()
    tile20_px = round(112 / mpp)
    side_groups = math.ceil(math.sqrt(n_tiles_20x / 4))  # 10x tiles per side (each 2x2 20x)
    margin = 2 * tile20_px
    side = side_groups * 2 * tile20_px + 2 * margin
    rgb = _paint(side, side, margin, np.random.default_rng(seed))
    levels = [rgb]
    while len(levels) < 3 and min(levels[-1].shape[:2]) // LEVEL_STEP >= 512:
        levels.append(np.asarray(Image.fromarray(levels[-1]).reduce(LEVEL_STEP)))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp.tif")
    with ThreadPoolExecutor(threads) as pool, tifffile.TiffWriter(tmp, bigtiff=True) as tif:
        for i, level in enumerate(levels):
            px_per_cm = 1e4 / (mpp * rgb.shape[1] / level.shape[1])
            tif.write(iter(_jpeg_tiles(level, quality, pool)), shape=level.shape, dtype=np.uint8,
                      photometric="ycbcr", subsampling=(2, 2), tile=(TILE, TILE),
                      compression="jpeg", resolution=(px_per_cm, px_per_cm),
                      resolutionunit="CENTIMETER", subfiletype=0 if i == 0 else 1,
                      metadata=None)
    tmp.replace(dest)
    facts = {"path": str(dest), "level0_px": [side, side], "mpp": mpp, "levels": len(levels),
             "bytes": dest.stat().st_size, "seconds": round(time.perf_counter() - t0, 2)}
    log.info("slide %s: %d x %d px at %.2f µm/px, %.0f MB, %.1f s", dest.name, side, side, mpp,
             facts["bytes"] / 1e6, facts["seconds"])
    return facts


def prepare_tiles(slide: Path, work: Path, *, max_tiles: int | None = None) -> tuple[Path, dict]:
    """Segment and tile ``slide`` with the project's own stages; the tile table and the seconds."""
    from duopath.config import SegmentationConfig, TilingConfig
    from duopath.slides.stages import segment_slide, tile_slide

    work.mkdir(parents=True, exist_ok=True)
    stem = slide.stem
    t0 = time.perf_counter()
    segment_slide(slide, stem, SegmentationConfig(), mask_png=work / f"{stem}.mask.png",
                  mask_json=work / f"{stem}.mask.json", qc_image=work / f"{stem}.qc.jpg")
    t1 = time.perf_counter()
    tiles = work / f"{stem}.tiles.parquet"
    tile_slide(work / f"{stem}.mask.png", work / f"{stem}.mask.json",
               TilingConfig(max_tiles=max_tiles), tiles_out=tiles)
    import pandas as pd

    counts = pd.read_parquet(tiles)["magnification"].value_counts().to_dict()
    return tiles, {"segment_s": round(t1 - t0, 3), "tile_s": round(time.perf_counter() - t1, 3),
                   "tiles": {str(k): int(v) for k, v in counts.items()}}


def random_checkpoint(name: str, dest: Path) -> Path:
    """Random weights of registry encoder ``name``'s architecture, saved where load_encoder reads.

    ``resnet50_trunc``: torchvision's ResNet-50 state dict (its layer4/fc keys are ignored by
    the registry, as with the real file). ``uni``: a timm ViT-L/16 (UNI's shape, ~1.2 GB).
    """
    import torch

    if dest.exists():
        return dest
    torch.manual_seed(0)
    if name == "resnet50_trunc":
        import torchvision

        sd = torchvision.models.resnet50().state_dict()
    elif name == "uni":
        import timm

        sd = timm.create_model("vit_large_patch16_224", pretrained=False, init_values=1e-5,
                               num_classes=0, dynamic_img_size=True).state_dict()
    else:
        raise ValueError(f"no random checkpoint recipe for {name!r}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, dest.with_suffix(".tmp"))
    dest.with_suffix(".tmp").replace(dest)
    return dest
