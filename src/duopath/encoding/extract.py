"""Slide → tile features in zarr (stage 3).

Why this shape:
- Tiles are read by DataLoader *worker processes*, each with its own OpenSlide handle (handles
  are not fork-safe to share), so JPEG decoding runs in parallel with the model and a GPU is not
  left waiting on a single reading thread. Pinned memory + non-blocking copies, bf16 autocast
  and channels-last on CUDA.
- A coarse tile and its nested finer tiles are one item: their region is read and decoded
  once and the finer tiles are cropped from it (half the JPEG decoding of per-tile reads), and
  all magnifications go through one loader pass, so workers start once per slide.
- The store is written to a temporary directory next to the destination and renamed when
  complete: a killed job never leaves a store that looks finished (``io.atomic_path``).
- A slide whose pixel data is damaged (it opens, but a tile cannot be decoded) is a per-slide
  failure: with ``on_error="skip"`` its store is written with ``status: failed``, ``stage:
  embed`` and the error, and no magnification group, so the cohort goes on without it.

Store layout (DESIGN.md data contract): root attrs ``encoder``, ``weights_id``, ``dim``,
``slide_id``, ``slide_mpp``, ``status`` (``ok``, ``empty`` or ``failed``; ``error`` and ``stage``
when failed), ``duopath_version``; one group per magnification
(``10x``, ``20x``, ...) with ``features [N, D]`` (chunked along N only), ``coords [N, 2]`` (level-0
px, top-left, int64), ``parent [N]`` (row in the next-coarser group, -1 for the coarsest),
``tissue_fraction [N]`` and attrs ``mpp``, ``tile_px``, ``size_um``, ``size0``, ``n_tiles``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
import zarr
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

import duopath
from duopath.config import EncoderConfig
from duopath.devices import resolve_device
from duopath.encoding.registry import Encoder, load_encoder
from duopath.io import atomic_path
from duopath.slides.reader import SlideError, open_slide

log = logging.getLogger(__name__)

CHUNK_ROWS = 8192


def tile_groups(tiles: pd.DataFrame) -> list[np.ndarray]:
    """Row numbers of ``tiles`` grouped by their coarsest ancestor (the tile, then descendants).

    Follows the ``parent`` chain magnification by magnification (the table lists coarse to
    fine), so a 10x tile's group holds its own row and its 20x (and 40x...) descendants' rows.
    """
    root = np.empty(len(tiles), dtype=np.int64)
    prev_rows: np.ndarray | None = None
    for _, rows in tiles.groupby("magnification", sort=False):
        pos = rows.index.to_numpy()
        if prev_rows is None:
            root[pos] = pos
        else:
            root[pos] = root[prev_rows[rows["parent"].to_numpy()]]
        prev_rows = pos
    order = np.argsort(root, kind="stable")
    bounds = np.flatnonzero(np.diff(root[order])) + 1
    return np.split(order, bounds) if len(order) else []


@dataclass(frozen=True)
class ReadFailure:
    """A tile group that could not be read, carried as data from a DataLoader worker.

    Why not just raise: an exception raised in a worker reaches the main process re-created
    from its message text (a RuntimeError holding a traceback), so a :class:`SlideError` would
    lose its type and become a crash. Returned as an item, the main process raises the
    SlideError itself (:func:`embed_tiles`).
    """

    reason: str
    hint: str


class TileDataset(Dataset):
    """Nested tile groups of one slide: item g = (row numbers, uint8 [k, px, px, 3]).

    Each item is one coarse tile with all its descendants, read with a single ``read_region``
    (:meth:`~duopath.slides.reader.Slide.read_nested`). The slide is opened lazily in each
    worker process (OpenSlide handles must not be shared across a fork).
    """

    def __init__(self, slide_path: Path, tiles: pd.DataFrame, mpp_override: float | None) -> None:
        self.slide_path = Path(slide_path)
        self.mpp_override = mpp_override
        tiles = tiles.reset_index(drop=True)
        self.groups = tile_groups(tiles)
        self.xy = tiles[["x", "y"]].to_numpy(np.int64)
        self.size0 = tiles["size0"].to_numpy(np.float64)
        self.tile_px = int(tiles["tile_px"].iloc[0]) if len(tiles) else 0
        self.n_tiles = len(tiles)
        self._slide = None

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, g: int) -> tuple[torch.Tensor, torch.Tensor | ReadFailure]:
        rows = self.groups[g]
        head = rows[0]
        squares = [(int(self.xy[r, 0]), int(self.xy[r, 1]), float(self.size0[r])) for r in rows]
        try:
            if self._slide is None:
                self._slide = open_slide(self.slide_path, self.mpp_override)
            crops = self._slide.read_nested(int(self.xy[head, 0]), int(self.xy[head, 1]),
                                            float(self.size0[head]), squares, self.tile_px)
        except SlideError as err:
            return torch.from_numpy(rows), ReadFailure(err.reason, err.hint)
        return torch.from_numpy(rows), torch.from_numpy(np.stack(crops))


def collate_groups(
    items: list[tuple[torch.Tensor, torch.Tensor | ReadFailure]],
) -> tuple[torch.Tensor, torch.Tensor | ReadFailure]:
    """Concatenate tile groups into one batch of rows and tiles (or pass a read failure on)."""
    rows = torch.cat([r for r, _ in items])
    failed = next((t for _, t in items if isinstance(t, ReadFailure)), None)
    return rows, failed if failed is not None else torch.cat([t for _, t in items])


@torch.inference_mode()
def embed_tiles(
    encoder: Encoder,
    dataset: TileDataset,
    *,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    desc: str = "embed",
) -> np.ndarray:
    """Run the encoder over every tile of ``dataset``; float32 [N, D] on the host."""
    n = dataset.n_tiles
    out = np.empty((n, encoder.spec.dim), dtype=np.float32)
    if n == 0:
        return out
    cuda = device.type == "cuda"
    per_group = max(1, round(n / max(1, len(dataset))))
    loader = DataLoader(
        dataset, batch_size=max(1, batch_size // per_group), num_workers=num_workers,
        pin_memory=cuda, shuffle=False, collate_fn=collate_groups,
        prefetch_factor=4 if num_workers > 0 else None,
    )
    module = encoder.module.to(device)
    if cuda:
        module = module.to(memory_format=torch.channels_last)
    with tqdm(total=n, desc=desc, unit="tile", disable=None) as bar:
        for rows, batch in loader:
            if isinstance(batch, ReadFailure):
                raise SlideError(dataset.slide_path, batch.reason, batch.hint)
            batch = batch.to(device, non_blocking=True)
            x = encoder.preprocess(batch)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    feats = module(x)
            else:
                feats = module(x)
            out[rows.numpy()] = feats.float().cpu().numpy()
            bar.update(len(rows))
    return out


def embed_slide(
    slide_path: Path,
    tiles_path: Path,
    out_store: Path,
    cfg: EncoderConfig,
    *,
    slide_id: str,
    mpp_override: float | None = None,
    encoder: Encoder | None = None,
    on_error: Literal["skip", "fail"] = "skip",
) -> dict:
    """Embed every tile of one slide and write the zarr store atomically. Returns root attrs.

    A :class:`SlideError` while reading (damaged tile data, the file gone) is raised with
    ``on_error="fail"``; with ``"skip"`` a ``status: failed`` store records it (module docstring).
    """
    t0 = time.perf_counter()
    tiles = pd.read_parquet(tiles_path)
    device = resolve_device(cfg.device)
    if encoder is None:
        encoder = load_encoder(cfg.name, cfg.weights, device=device)
    attrs = {
        "encoder": encoder.spec.name,
        "weights_id": encoder.weights_id,
        "dim": int(encoder.spec.dim),
        "slide_id": slide_id,
        "slide_mpp": None,
        "status": "ok" if len(tiles) else "empty",
        "n_tiles": len(tiles),
        "duopath_version": duopath.__version__,
    }
    try:
        if len(tiles):
            with open_slide(slide_path, mpp_override) as slide:
                attrs["slide_mpp"] = slide_mpp = slide.mpp
            implied = tiles["tile_px"].iloc[0] * tiles["mpp"].iloc[0] / tiles["size0"].iloc[0]
            if abs(implied - slide_mpp) / slide_mpp > 1e-6:
                raise ValueError(
                    f"slide {slide_id}: tiles in {tiles_path} were made for {implied:.4f} µm/px but "
                    f"the slide now reads {slide_mpp:.4f} µm/px; re-run tiling (delete the tile table)"
                )
        dataset = TileDataset(slide_path, tiles, mpp_override)
        feats = embed_tiles(encoder, dataset, batch_size=cfg.batch_size,
                            num_workers=min(cfg.num_workers, os.cpu_count() or 1),
                            device=device, desc=slide_id)
    except SlideError as err:
        if on_error == "fail":
            raise
        log.error("%s (slide %s skipped; on_slide_error: skip)", err, slide_id)
        attrs.update(status="failed", stage="embed", error=str(err), n_tiles=0)
        with atomic_path(out_store, is_dir=True) as tmp:
            zarr.open_group(str(tmp), mode="w").attrs.update(attrs)
        return attrs
    dtype = np.float16 if cfg.dtype == "float16" else np.float32
    with atomic_path(out_store, is_dir=True) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        root.attrs.update(attrs)
        for mag, rows in tiles.groupby("magnification", sort=False):
            index = rows.index.to_numpy()
            write_feature_group(root, str(mag), rows, feats[index].astype(dtype))
    attrs["seconds"] = time.perf_counter() - t0
    log.info("%s: %d tiles -> %s in %.1f s", slide_id, len(tiles), out_store, attrs["seconds"])
    return attrs


def write_feature_group(root: zarr.Group, name: str, rows: pd.DataFrame, feats: np.ndarray) -> None:
    """One magnification's group of a feature store: features, coords, parent, tissue fraction and
    the tile geometry attrs (the layout ``training.data.read_slide`` reads; public so synthetic
    stores in tests and benchmarks are written the same way)."""
    n, d = feats.shape
    chunk = max(1, min(n, CHUNK_ROWS))
    g = root.create_group(name)
    g.create_array("features", data=feats, chunks=(chunk, d))
    g.create_array("coords", data=rows[["x", "y"]].to_numpy(np.int64), chunks=(chunk, 2))
    g.create_array("parent", data=rows["parent"].to_numpy(np.int64), chunks=(chunk,))
    g.create_array("tissue_fraction", data=rows["tissue_fraction"].to_numpy(np.float32),
                   chunks=(chunk,))
    first = rows.iloc[0]
    g.attrs.update({
        "mpp": float(first["mpp"]),
        "tile_px": int(first["tile_px"]),
        "size_um": float(first["size_um"]),
        "size0": float(first["size0"]),
        "n_tiles": n,
    })
