"""Cohort-level WSI summary: which slides worked, which failed and why, how many tiles each has.

This table is where a skipped slide (``on_slide_error: skip``) becomes visible to the user
instead of silently missing from training.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from duopath.io import write_table

log = logging.getLogger(__name__)


def summarise(mask_jsons: list[Path], tile_tables: list[Path], out: Path) -> pd.DataFrame:
    if len(mask_jsons) != len(tile_tables):
        raise ValueError("need one tile table per mask JSON")
    rows = []
    for meta_path, tiles_path in zip(mask_jsons, tile_tables, strict=True):
        meta = json.loads(Path(meta_path).read_text())
        tiles = pd.read_parquet(tiles_path, columns=["magnification"])
        counts = tiles.groupby("magnification", sort=False).size().to_dict()
        row = {
            "slide_id": meta["slide_id"],
            "status": meta["status"] if meta["status"] != "ok" or len(tiles) else "no_tiles",
            "error": meta.get("error") or "",
            "slide_mpp": meta.get("slide_mpp"),
            "mpp_source": meta.get("mpp_source", ""),
            "tissue_area_mm2": meta.get("tissue_area_mm2"),
        }
        row.update({f"tiles_{mag}": int(n) for mag, n in counts.items()})
        rows.append(row)
    table = pd.DataFrame(rows)
    tile_cols = [c for c in table.columns if c.startswith("tiles_")]
    table[tile_cols] = table[tile_cols].fillna(0).astype(int)
    bad = table[table["status"] != "ok"]
    for r in bad.itertuples():
        log.warning("slide %s: %s %s", r.slide_id, r.status, r.error)
    write_table(out, table)
    log.info("%d slides, %d ok, %d left out -> %s", len(table), len(table) - len(bad), len(bad), out)
    return table
