"""Benchmark the WSI stages against DESIGN.md's targets, as ratios measured in one run.

- segmentation ≤ 0.3 s per slide, tiling coordinates ≤ 0.1 s per slide (CMU-1-Small-Region)
- tile reading on CPU ≥ 80 % of raw OpenSlide ``read_region`` + RGBA→RGB throughput per core
  (same tiles, same process, one core: the DataLoader path with ``num_workers=0``)

Usage: ``.venv/bin/python bench/wsi_stages.py [--slide PATH] [--repeats N]``; prints a table
and writes ``bench/results/wsi_stages.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from importlib.resources import files
from pathlib import Path

import numpy as np
import openslide
import torch
from torch.utils.data import DataLoader

from duopath.config import SegmentationConfig, TilingConfig
from duopath.encoding.extract import TileDataset, collate_groups
from duopath.slides.reader import open_slide
from duopath.slides.tiling import build_grids
from duopath.slides.tissue import segment

log = logging.getLogger("bench")


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slide", type=Path,
                    default=Path(str(files("duopath") / "data/slides/CMU-1-Small-Region.svs")))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("bench/results/wsi_stages.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)

    seg_cfg = SegmentationConfig()
    tiling_cfg = TilingConfig(min_tissue_fraction=0.0)  # all tiles: the most reading work

    def do_segment():
        with open_slide(args.slide) as slide:
            thumb, mpp = slide.thumbnail(seg_cfg.mpp)
            dims, slide_mpp = slide.dimensions, slide.mpp
        return segment(thumb, mpp, seg_cfg), dims, slide_mpp

    t_seg = best_of(do_segment, args.repeats)
    tissue, dims, slide_mpp = do_segment()
    t_tile = best_of(lambda: build_grids(tissue.mask, tissue.mpp, dims, slide_mpp, tiling_cfg),
                     args.repeats)
    tiles = build_grids(tissue.mask, tissue.mpp, dims, slide_mpp, tiling_cfg)

    rows = list(tiles[["x", "y", "size0"]].itertuples(index=False))

    def raw_read():  # a fresh handle each time: a slide is read once, with a cold tile cache
        raw = openslide.OpenSlide(str(args.slide))
        for x, y, size0 in rows:
            level = raw.get_best_level_for_downsample(size0 / 224)
            ds = raw.level_downsamples[level]
            s = round(size0 / ds)
            np.asarray(raw.read_region((int(x), int(y)), level, (s, s)).convert("RGB"))

    def ours_read():
        loader = DataLoader(TileDataset(args.slide, tiles, None), batch_size=16, num_workers=0,
                            collate_fn=collate_groups)
        for _ in loader:
            pass

    t_raw = best_of(raw_read, args.repeats)
    t_ours = best_of(ours_read, args.repeats)
    n = len(rows)
    result = {
        "slide": args.slide.name,
        "slide_dims": list(dims),
        "n_tiles_read": n,
        "segmentation_s": t_seg,
        "segmentation_target_s": 0.3,
        "segmentation_ratio_to_target": t_seg / 0.3,
        "tiling_s": t_tile,
        "tiling_target_s": 0.1,
        "tiling_ratio_to_target": t_tile / 0.1,
        "raw_read_tiles_per_s": n / t_raw,
        "duopath_read_tiles_per_s": n / t_ours,
        "read_throughput_ratio": t_raw / t_ours,
        "read_throughput_target_ratio": 0.8,
        "note": "raw = one OpenSlide read_region per tile at the best level + RGB convert, no "
                "resize; duopath = TileDataset through a DataLoader (num_workers=0, one core): one "
                "read per 10x tile, its 20x children cropped from it, resize to 224 px and "
                "batch collation included",
        "machine": f"{platform.machine()} {platform.processor() or ''} torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d"),
    }
    for k, v in result.items():
        log.info("%-32s %s", k, f"{v:.4g}" if isinstance(v, float) else v)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
