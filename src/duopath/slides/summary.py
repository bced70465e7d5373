"""Cohort-level WSI summary: which slides worked, which failed and why, how many tiles each has.

This table is where a skipped slide (``on_slide_error: skip``) becomes visible to the user
instead of silently missing from training. A slide fails in ``segment`` (unreadable, no mpp, no
tissue: its mask JSON says so) or in ``embed`` (pixel data damaged at full resolution: its
feature store says so); the ``stage`` column says which, ``error`` says why.
``coverage_{mag}`` is the share of the slide's tissue area under its tiles of that magnification
(from the tile table's metadata, see ``slides.tiling``); ``partial_{mag}`` counts tiles kept only
as parents of finer tiles.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from duopath.io import write_table

log = logging.getLogger(__name__)


def summarise(
    mask_jsons: list[Path],
    tile_tables: list[Path],
    out: Path,
    feature_stores: Sequence[Path] = (),
) -> pd.DataFrame:
    """One row per slide; ``feature_stores`` (same order, optional) adds embed-stage failures."""
    if len(mask_jsons) != len(tile_tables):
        raise ValueError("need one tile table per mask JSON")
    if feature_stores and len(feature_stores) != len(mask_jsons):
        raise ValueError("need one feature store per mask JSON (or none)")
    stores = list(feature_stores) or [None] * len(mask_jsons)
    rows = []
    for meta_path, tiles_path, store in zip(mask_jsons, tile_tables, stores, strict=True):
        meta = json.loads(Path(meta_path).read_text())
        tiles = pd.read_parquet(tiles_path)  # attrs (coverage) come with the file
        counts = tiles.groupby("magnification", sort=False).size().to_dict()
        status = meta["status"] if meta["status"] != "ok" or len(tiles) else "no_tiles"
        stage = meta.get("stage", "segment") if meta["status"] != "ok" else ""
        error = meta.get("error") or ""
        embedded = _store_attrs(store) if store is not None and status == "ok" else {}
        if embedded.get("status") == "failed":
            status, stage = "failed", embedded.get("stage", "embed")
            error = embedded.get("error") or ""
        partial = (tiles.groupby("magnification", sort=False)["partial"].sum().to_dict()
                   if "partial" in tiles else {})
        row = {
            "slide_id": meta["slide_id"],
            "status": status,
            "stage": stage,
            "error": error,
            "slide_mpp": meta.get("slide_mpp"),
            "mpp_source": meta.get("mpp_source", ""),
            "tissue_area_mm2": meta.get("tissue_area_mm2"),
        }
        row.update({f"tiles_{mag}": int(n) for mag, n in counts.items()})
        row.update({f"partial_{mag}": int(n) for mag, n in partial.items()})
        row.update({f"coverage_{mag}": round(float(c), 4)
                    for mag, c in tiles.attrs.get("coverage", {}).items()})
        rows.append(row)
    table = pd.DataFrame(rows)
    tile_cols = [c for c in table.columns if c.startswith(("tiles_", "partial_"))]
    table[tile_cols] = table[tile_cols].fillna(0).astype(int)
    bad = table[table["status"] != "ok"]
    for r in bad.itertuples():
        log.warning("slide %s: %s %s %s", r.slide_id, r.status, r.stage, r.error)
    write_table(out, table)
    log.info("%d slides, %d ok, %d left out -> %s", len(table), len(table) - len(bad), len(bad), out)
    return table


def _store_attrs(store: Path) -> dict:
    """Root attrs of a feature store (``status``, ``stage``, ``error``), features not read."""
    import zarr

    with warnings.catch_warnings():
        # Snakemake's `.snakemake_timestamp` marker in directory outputs is not a zarr member.
        warnings.filterwarnings("ignore", message=".*not recognized as a component.*")
        return dict(zarr.open_group(str(store), mode="r").attrs)
