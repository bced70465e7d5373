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
  embed`` and the error, and no magnification group, so the cohort goes on without it (and,
  in a several-slide job, the next slide is embedded).
- Several slides can share one process (:func:`embed_slides`, ``duopath embed`` with several
  slides): the encoder is loaded and warmed up once, and slide k's store is written by a
  background thread while slide k+1 is embedded (write-behind, one write in flight, so memory
  holds at most two slides' features). Outputs stay one atomic store per slide.
- The batch loop never waits for the device on the host: features go back through pinned
  buffers with non-blocking copies and are collected one batch late, so the next batch is
  already queued when the host looks at the previous one. On CUDA every batch is padded to one
  fixed size (static shapes: cuDNN autotunes once, ``torch.compile`` compiles once; padding rows
  are dropped) and ``encoder.compile`` optionally compiles the encoder.
- Each run records where its time went (:mod:`duopath.encoding.timing`): read+decode, RGB
  conversion, resize (CPU seconds in the workers), waiting for data, host→device, preprocess,
  forward, device→host (device seconds), zarr write.

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
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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
from duopath.encoding.timing import WORKER_STAGES, DeviceClock, StageTimes
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

    @property
    def max_group(self) -> int:
        """Most tiles in one group (a coarse tile and all its descendants)."""
        return max((len(g) for g in self.groups), default=1)

    def __getitem__(self, g: int) -> tuple[torch.Tensor, torch.Tensor | ReadFailure, torch.Tensor]:
        """(row numbers, uint8 tiles [k, px, px, 3] or the read failure, seconds per worker stage)."""
        rows = self.groups[g]
        head = rows[0]
        squares = [(int(self.xy[r, 0]), int(self.xy[r, 1]), float(self.size0[r])) for r in rows]
        timer = np.zeros(len(WORKER_STAGES))
        try:
            if self._slide is None:
                self._slide = open_slide(self.slide_path, self.mpp_override)
            crops = self._slide.read_nested(int(self.xy[head, 0]), int(self.xy[head, 1]),
                                            float(self.size0[head]), squares, self.tile_px,
                                            timer=timer)
        except SlideError as err:
            return torch.from_numpy(rows), ReadFailure(err.reason, err.hint), torch.from_numpy(timer)
        return torch.from_numpy(rows), torch.from_numpy(np.stack(crops)), torch.from_numpy(timer)


def collate_groups(
    items: list[tuple[torch.Tensor, torch.Tensor | ReadFailure, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor | ReadFailure, torch.Tensor]:
    """Concatenate tile groups into one batch of rows and tiles (or pass a read failure on);
    sum the worker stage times."""
    rows = torch.cat([i[0] for i in items])
    seconds = torch.stack([i[2] for i in items]).sum(0)
    failed = next((i[1] for i in items if isinstance(i[1], ReadFailure)), None)
    return rows, failed if failed is not None else torch.cat([i[1] for i in items]), seconds


@dataclass(frozen=True)
class SlideJob:
    """One slide to embed: its file, tile table and destination store."""

    slide_path: Path
    tiles_path: Path
    out_store: Path
    slide_id: str
    mpp_override: float | None = None


class Runner:
    """An encoder ready on its device: eval module, channels-last and bf16 autocast on CUDA,
    optionally ``torch.compile``-d. Built once per process and shared by every slide."""

    def __init__(self, encoder: Encoder, device: torch.device, *, compile_model: bool = False) -> None:
        self.encoder, self.device = encoder, device
        self.cuda = device.type == "cuda"
        module = encoder.module.to(device)
        if self.cuda:
            module = module.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True  # static batch shapes: tuned once
        self.forward: Callable[[torch.Tensor], torch.Tensor] = (
            torch.compile(module, dynamic=False) if compile_model else module)

    def preprocess(self, tiles: torch.Tensor) -> torch.Tensor:
        """uint8 [B, px, px, 3] tiles on the device -> the encoder's normalised input."""
        x = self.encoder.preprocess(tiles)
        return x.contiguous(memory_format=torch.channels_last) if self.cuda else x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed input -> features [B, D] on the device (bf16 autocast on CUDA)."""
        if not self.cuda:
            return self.forward(x)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return self.forward(x)


def _pad_rows(batch: torch.Tensor, rows: int) -> torch.Tensor:
    """``batch`` with zero tiles appended up to ``rows`` (a fixed shape for cuDNN / compile)."""
    if batch.shape[0] >= rows:
        return batch
    pad = batch.new_zeros((rows - batch.shape[0], *batch.shape[1:]))
    return torch.cat([batch, pad])


@torch.inference_mode()
def embed_tiles(
    encoder: Encoder | Runner,
    dataset: TileDataset,
    *,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    desc: str = "embed",
) -> tuple[np.ndarray, StageTimes]:
    """Run the encoder over every tile of ``dataset``: float32 [N, D] on the host, and where the
    time went (:class:`~duopath.encoding.timing.StageTimes`, write excluded)."""
    t_start = time.perf_counter()
    run = encoder if isinstance(encoder, Runner) else Runner(encoder, device)
    n = dataset.n_tiles
    times = StageTimes(n_tiles=n)
    out = np.empty((n, run.encoder.spec.dim), dtype=np.float32)
    if n == 0:
        return out, times
    per_group = max(1, round(n / max(1, len(dataset))))
    groups_per_batch = max(1, batch_size // per_group)
    loader = DataLoader(
        dataset, batch_size=groups_per_batch, num_workers=num_workers,
        pin_memory=run.cuda, shuffle=False, collate_fn=collate_groups,
        prefetch_factor=4 if num_workers > 0 else None,
    )
    fixed_rows = groups_per_batch * dataset.max_group  # every CUDA batch padded to this
    clock = DeviceClock(device)
    pending: tuple[torch.Tensor, torch.Tensor, torch.cuda.Event | None] | None = None

    def land(item: tuple[torch.Tensor, torch.Tensor, torch.cuda.Event | None]) -> None:
        rows, host, done = item
        if done is not None:
            done.synchronize()
        out[rows.numpy()] = host[: len(rows)].numpy()

    batches = iter(loader)
    with tqdm(total=n, desc=desc, unit="tile", disable=None) as bar:
        while True:
            t0 = time.perf_counter()
            try:
                rows, batch, worker_s = next(batches)
            except StopIteration:
                break
            times.seconds["wait"] += time.perf_counter() - t0
            if isinstance(batch, ReadFailure):
                raise SlideError(dataset.slide_path, batch.reason, batch.hint)
            for k, v in zip(WORKER_STAGES, worker_s.tolist(), strict=True):
                times.seconds[k] += v
            clock.start()
            x = batch.to(device, non_blocking=True)  # from pinned memory: asynchronous
            if run.cuda:  # padded on the device (a host-side cat would lose the pinning)
                x = _pad_rows(x, fixed_rows)
            clock.mark("h2d")
            x = run.preprocess(x)
            clock.mark("preprocess")
            feats = run(x)
            clock.mark("forward")
            if run.cuda:  # features back through pinned memory, collected one batch late
                host = torch.empty(feats.shape, dtype=torch.float32, pin_memory=True)
                host.copy_(feats.float(), non_blocking=True)
                done = torch.cuda.Event()
                done.record()
            else:
                host, done = feats.float(), None
            clock.mark("d2h")
            if pending is not None:
                land(pending)
            pending = (rows, host, done)
            bar.update(len(rows))
        if pending is not None:
            land(pending)
    times.seconds.update(clock.collect())
    times.wall_s = time.perf_counter() - t_start
    return out, times


def _check_tiles_match(tiles: pd.DataFrame, job: SlideJob) -> float | None:
    """The slide's µm/px; refuses tiles made for another resolution (re-run tiling)."""
    if not len(tiles):
        return None
    with open_slide(job.slide_path, job.mpp_override) as slide:
        slide_mpp = slide.mpp
    implied = tiles["tile_px"].iloc[0] * tiles["mpp"].iloc[0] / tiles["size0"].iloc[0]
    if abs(implied - slide_mpp) / slide_mpp > 1e-6:
        raise ValueError(
            f"slide {job.slide_id}: tiles in {job.tiles_path} were made for {implied:.4f} µm/px but "
            f"the slide now reads {slide_mpp:.4f} µm/px; re-run tiling (delete the tile table)"
        )
    return slide_mpp


def _write_store(job: SlideJob, attrs: dict, tiles: pd.DataFrame, feats: np.ndarray,
                 dtype: type, times: StageTimes) -> dict:
    """Write one slide's store atomically (the write-behind thread runs this)."""
    t0 = time.perf_counter()
    with atomic_path(job.out_store, is_dir=True) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        root.attrs.update(attrs)
        for mag, rows in tiles.groupby("magnification", sort=False):
            index = rows.index.to_numpy()
            write_feature_group(root, str(mag), rows, feats[index].astype(dtype))
    times.seconds["write"] += time.perf_counter() - t0
    times.wall_s += times.seconds["write"]
    return attrs


def _write_failed(job: SlideJob, attrs: dict, err: SlideError) -> dict:
    """The store of a slide that could not be read: attrs only, ``status: failed``."""
    log.error("%s (slide %s skipped; on_slide_error: skip)", err, job.slide_id)
    attrs.update(status="failed", stage="embed", error=str(err), n_tiles=0)
    with atomic_path(job.out_store, is_dir=True) as tmp:
        zarr.open_group(str(tmp), mode="w").attrs.update(attrs)
    return attrs


def embed_slides(
    jobs: Sequence[SlideJob],
    cfg: EncoderConfig,
    *,
    encoder: Encoder | None = None,
    on_error: Literal["skip", "fail"] = "skip",
) -> list[dict]:
    """Embed several slides in this process, the encoder loaded once; one atomic store each.

    Returns each slide's root attrs plus ``seconds`` (slide wall time, its write included) and
    ``timing`` (:meth:`StageTimes.as_dict`). A slide's store is written by a background thread
    while the next slide is embedded; at most one write is in flight. A :class:`SlideError` while
    reading is raised with ``on_error="fail"``; with ``"skip"`` a ``status: failed`` store
    records it and the next slide goes on (module docstring).
    """
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    if encoder is None:
        encoder = load_encoder(cfg.name, cfg.weights, device=device)
    run = Runner(encoder, device, compile_model=cfg.compile)
    log.info("encoder %s ready on %s in %.2f s", encoder.spec.name, device, time.perf_counter() - t0)
    dtype = np.float16 if cfg.dtype == "float16" else np.float32
    workers = min(cfg.num_workers, os.cpu_count() or 1)
    results: list[dict] = []
    writing: tuple[Future, SlideJob, float, StageTimes] | None = None

    def finish(item: tuple[Future, SlideJob, float, StageTimes]) -> None:
        future, job, started, times = item
        attrs = future.result()
        attrs["seconds"] = time.perf_counter() - started
        attrs["timing"] = times.as_dict()
        log.info("%s: %d tiles -> %s in %.1f s (%s)", job.slide_id, attrs["n_tiles"], job.out_store,
                 attrs["seconds"], ", ".join(f"{k} {v:g}" for k, v in attrs["timing"].items()))
        results.append(attrs)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="zarr-write") as writer:
        for job in jobs:
            started = time.perf_counter()
            tiles = pd.read_parquet(job.tiles_path)
            attrs = {
                "encoder": encoder.spec.name,
                "weights_id": encoder.weights_id,
                "dim": int(encoder.spec.dim),
                "slide_id": job.slide_id,
                "slide_mpp": None,
                "status": "ok" if len(tiles) else "empty",
                "n_tiles": len(tiles),
                "duopath_version": duopath.__version__,
            }
            try:
                attrs["slide_mpp"] = _check_tiles_match(tiles, job)
                dataset = TileDataset(job.slide_path, tiles, job.mpp_override)
                feats, times = embed_tiles(run, dataset, batch_size=cfg.batch_size,
                                           num_workers=workers, device=device, desc=job.slide_id)
            except SlideError as err:
                if on_error == "fail":
                    raise
                if writing is not None:  # keep results in job order
                    finish(writing)
                    writing = None
                results.append(_write_failed(job, attrs, err))
                continue
            if writing is not None:  # one write in flight: memory stays bounded
                finish(writing)
            future = writer.submit(_write_store, job, dict(attrs), tiles, feats, dtype, times)
            writing = (future, job, started, times)
        if writing is not None:
            finish(writing)
    return results


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
    job = SlideJob(Path(slide_path), Path(tiles_path), Path(out_store), slide_id, mpp_override)
    return embed_slides([job], cfg, encoder=encoder, on_error=on_error)[0]


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
