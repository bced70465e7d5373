"""The demo's WSI half (segment -> tile -> embed) for every slide in ONE process.

Why: with ~140 small slides the DAG's one-job-per-slide-per-stage layout pays a fresh Python
start and its imports (~1 CPU-s for segment/tile, ~3 for embed, plus the DataLoader workers)
about 400 times, which is more than the tile work itself (bench/results/demo_profile.json).
This measures what the same stages cost when a job processes many slides (encoder loaded
once), the number a batched rule would be sized from. It writes exactly the files the rules
write (same functions, same paths under ``output/``), skipping those that exist.

Usage: ``.venv/bin/python bench/demo_wsi_batch.py [--config config.yaml] [--cohort demo]``;
writes ``bench/results/demo_wsi_batch.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import time
from pathlib import Path

import pandas as pd

from duopath import layout
from duopath.config import load_config
from duopath.encoding.extract import embed_slide, resolve_device
from duopath.encoding.registry import load_encoder
from duopath.slides.stages import segment_slide, tile_slide

log = logging.getLogger("bench")


def cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", type=Path, default=Path("config.yaml"))
    ap.add_argument("--cohort", default="demo")
    ap.add_argument("--out", type=Path, default=Path("bench/results/demo_wsi_batch.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = load_config(args.config)
    out = Path(cfg.output_dir)
    sheet = pd.read_csv(out / layout.SHEET.format(cohort=args.cohort), keep_default_na=False)
    stage_wall = {"segment": 0.0, "tile": 0.0, "embed": 0.0}
    stage_cpu = dict(stage_wall)
    t_start, c_start = time.perf_counter(), cpu_seconds()
    encoder = load_encoder(cfg.encoder.name, cfg.encoder.weights, device=resolve_device(cfg.encoder.device))
    load_s = time.perf_counter() - t_start
    n_tiles = 0
    for row in sheet.itertuples(index=False):
        sid, slide = row.slide_id, Path(row.slide_path)  # the canonical sheet holds resolved paths
        paths = {k: out / getattr(layout, k).format(cohort=args.cohort, slide=sid, encoder=cfg.encoder.name)
                 for k in ("MASK_PNG", "MASK_JSON", "MASK_QC", "TILES", "TILES_QC", "FEATURES")}
        for stage in ("segment", "tile", "embed"):
            t0, c0 = time.perf_counter(), cpu_seconds()
            if stage == "segment" and not paths["MASK_JSON"].exists():
                segment_slide(slide, sid, cfg.segmentation, mask_png=paths["MASK_PNG"],
                              mask_json=paths["MASK_JSON"], qc_image=paths["MASK_QC"])
            elif stage == "tile" and not paths["TILES"].exists():
                tile_slide(paths["MASK_PNG"], paths["MASK_JSON"], cfg.tiling, tiles_out=paths["TILES"],
                           qc_in=paths["MASK_QC"], qc_out=paths["TILES_QC"])
            elif stage == "embed" and not paths["FEATURES"].exists():
                n_tiles += embed_slide(slide, paths["TILES"], paths["FEATURES"], cfg.encoder,
                                       slide_id=sid, encoder=encoder)["n_tiles"]
            stage_wall[stage] += time.perf_counter() - t0
            stage_cpu[stage] += cpu_seconds() - c0
    result = {
        "n_slides": len(sheet),
        "n_tiles_embedded": n_tiles,
        "encoder_load_s": round(load_s, 2),
        "wall_s": {k: round(v, 1) for k, v in stage_wall.items()},
        "cpu_s": {k: round(v, 1) for k, v in stage_cpu.items()},
        "total_wall_s": round(time.perf_counter() - t_start, 1),
        "total_cpu_s": round(cpu_seconds() - c_start, 1),
        "embed_tiles_per_wall_s": round(n_tiles / max(stage_wall["embed"], 1e-9), 1),
        "num_workers": cfg.encoder.num_workers,
        "load_average_at_end": os.getloadavg(),
        "note": "slides whose outputs already existed were skipped (their stage time is ~0)",
    }
    log.info("%s", result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
