"""Nested multi-scale tile grids by physical resolution.

The coarsest magnification (10x = 1.0 µm/px by default) tiles the slide on a regular grid whose
origin is anchored to the tissue (``grid_origin``: the shift of at most one tile that covers
the most tissue). Each finer magnification subdivides the coarse cells into r×r children
(r = integer mpp ratio, 2 for 10x→20x), so a 10x tile covers exactly the tissue of its 20x
children, and every child records its ``parent`` row: cross-scale losses (IGC) compare the same
tissue, which a separate 20x grid would not guarantee.

Which tiles are kept: a tile whose own tissue fraction reaches ``min_tissue_fraction``; and a
coarse tile that fails on its own but has a kept finer tile under it, flagged ``partial``. Why
the partial parents: requiring the 10x tile to pass first lost every 20x tile at the tissue's
edges (59-64 % of a small biopsy's tissue tiled at 20x); keeping the parent keeps the nesting
(each 20x tile has its 10x tile, so IGC compares the same tissue) at the cost of some 10x
tiles that are part background, which their ``tissue_fraction`` and ``partial`` flag say.

Tissue fraction comes from the segmentation mask through a summed-area table, so a grid of
any size costs a few vectorised numpy operations (target: ≤ 0.1 s per slide).

Table columns (one row per tile, all magnifications in one table):
``magnification, mpp, tile_px, size_um, idx, x, y, size0, col, row, tissue_fraction, parent,
partial``
where ``x, y`` are level-0 pixel coordinates of the top-left corner, ``size0`` the tile side in
level-0 pixels, ``idx`` the row number within its magnification and ``parent`` the ``idx`` of
the enclosing tile one magnification coarser (-1 for the coarsest); ``col, row`` count from the
grid origin; ``partial`` is True for a tile kept only because a finer tile under it passes.
The table's ``attrs`` (kept in the parquet file) hold ``origin`` (level-0 px) and ``coverage``:
per magnification, the share of the mask's tissue that lies under its kept tiles.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from duopath.config import TilingConfig

TILE_COLUMNS = [
    "magnification", "mpp", "tile_px", "size_um", "idx", "x", "y", "size0", "col", "row",
    "tissue_fraction", "parent", "partial",
]


def summed_area(mask: np.ndarray) -> np.ndarray:
    """Summed-area table with a zero row/column in front: box sums in O(1).

    int32 holds any mask up to 46k × 46k px (a 37 cm slide at 8 µm/px), at half the time of int64.
    """
    sat = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int32)
    np.cumsum(mask, axis=0, dtype=np.int32, out=sat[1:, 1:])
    np.cumsum(sat[1:, 1:], axis=1, out=sat[1:, 1:])
    return sat


def box_fraction(sat: np.ndarray, x0: np.ndarray, y0: np.ndarray, x1: np.ndarray,
                 y1: np.ndarray) -> np.ndarray:
    """Mean of the mask over boxes [x0, x1) × [y0, y1) in mask pixels (clipped to the mask)."""
    h, w = sat.shape[0] - 1, sat.shape[1] - 1
    x0 = np.clip(x0, 0, w)
    x1 = np.clip(np.maximum(x1, x0 + 1), 0, w)
    y0 = np.clip(y0, 0, h)
    y1 = np.clip(np.maximum(y1, y0 + 1), 0, h)
    total = sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]
    area = np.maximum((x1 - x0) * (y1 - y0), 1)
    return total / area


def even_subsample(col: np.ndarray, row: np.ndarray, k: int) -> np.ndarray:
    """Indices of ``k`` cells spread evenly over the tissue, by farthest-point sampling.

    Unlike a random subset, this never leaves a large region unsampled, and it is
    deterministic (starts from the cell nearest the centroid; ties break by index). Cost is
    O(N·k) vectorised distance updates, a fraction of a second for N = 20k coarse tiles.
    """
    n = len(col)
    if k >= n:
        return np.arange(n)
    pts = np.stack([col, row], axis=1).astype(np.float64)
    first = int(np.argmin(((pts - pts.mean(axis=0)) ** 2).sum(axis=1)))
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = first
    dist = ((pts - pts[first]) ** 2).sum(axis=1)
    for i in range(1, k):
        nxt = int(np.argmax(dist))
        chosen[i] = nxt
        np.minimum(dist, ((pts - pts[nxt]) ** 2).sum(axis=1), out=dist)
    return np.sort(chosen)


@dataclass(frozen=True)
class TissueSums:
    """Box sums of the mask in O(1), from a summed-area table of the tissue's bounding box only.

    Why the crop: the table is the tiling's main cost (two cumulative sums over the mask), and
    tissue often covers a third of the slide; boxes are given in whole-mask pixels either way.
    """

    sat: np.ndarray
    x: int
    y: int
    shape: tuple[int, int]

    @classmethod
    def of(cls, mask: np.ndarray) -> TissueSums:
        rows, cols = mask.any(axis=1), mask.any(axis=0)
        if not rows.any():
            return cls(np.zeros((1, 1), np.int32), 0, 0, mask.shape)
        y0, y1 = int(rows.argmax()), len(rows) - int(rows[::-1].argmax())
        x0, x1 = int(cols.argmax()), len(cols) - int(cols[::-1].argmax())
        return cls(summed_area(mask[y0:y1, x0:x1]), x0, y0, mask.shape)

    @property
    def total(self) -> int:
        return int(self.sat[-1, -1])

    def sums(self, x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray) -> np.ndarray:
        """Tissue pixels in boxes [x0, x1) × [y0, y1) (whole-mask pixels, broadcast together)."""
        ch, cw = self.sat.shape[0] - 1, self.sat.shape[1] - 1
        a0, a1 = np.clip(x0 - self.x, 0, cw), np.clip(x1 - self.x, 0, cw)
        b0, b1 = np.clip(y0 - self.y, 0, ch), np.clip(y1 - self.y, 0, ch)
        return self.sat[b1, a1] - self.sat[b0, a1] - self.sat[b1, a0] + self.sat[b0, a0]


def _grid_fractions(tissue: TissueSums, to_mask: float, origin: tuple[float, float], size0: float,
                    ncols: int, nrows: int) -> tuple[np.ndarray, np.ndarray]:
    """Tissue fraction [nrows, ncols] of every cell of one grid, and its tissue in mask pixels.

    The fraction (the keep rule) is measured over the tile's box widened to whole mask pixels
    (floor/ceil) and clipped to the mask, as ``box_fraction`` does. The tissue count uses boxes
    rounded to the nearest mask pixel instead: adjacent cells then partition the mask exactly,
    so summing it over kept cells gives the tissue the tiles cover (``coverage``).
    """
    h, w = tissue.shape
    xs = origin[0] + np.arange(ncols + 1) * size0
    ys = origin[1] + np.arange(nrows + 1) * size0
    fx0 = np.clip(np.floor(xs[:-1] * to_mask).astype(np.int64), 0, w)
    fy0 = np.clip(np.floor(ys[:-1] * to_mask).astype(np.int64), 0, h)
    fx1 = np.clip(np.maximum(np.ceil(xs[1:] * to_mask).astype(np.int64), fx0 + 1), 0, w)
    fy1 = np.clip(np.maximum(np.ceil(ys[1:] * to_mask).astype(np.int64), fy0 + 1), 0, h)
    area = np.maximum((fx1 - fx0)[None, :] * (fy1 - fy0)[:, None], 1)
    frac = tissue.sums(fx0[None, :], fy0[:, None], fx1[None, :], fy1[:, None]) / area
    rx = np.clip(np.round(xs * to_mask).astype(np.int64), 0, w)
    ry = np.clip(np.round(ys * to_mask).astype(np.int64), 0, h)
    covered = tissue.sums(rx[None, :-1], ry[:-1, None], rx[None, 1:], ry[1:, None])
    return frac, covered


def _best_phase(tissue: TissueSums, to_mask: float, size0: float, extent: tuple[float, float],
                start: tuple[float, float], steps: int, min_fraction: float,
                score: str) -> tuple[float, float]:
    """The grid origin among ``steps``×``steps`` shifts of ``size0 / steps`` from ``start``.

    ``score="tissue"``: most tissue under cells that pass ``min_fraction`` (the finest grid:
    this is the coverage); ``score="tiles"``: most passing cells, then fewest cells with any
    tissue (a coarser grid: whole tiles rather than slivers). Ties keep the earliest shift, so
    the choice is deterministic.
    """
    best, best_key = start, None
    w0, h0 = extent
    for i in range(steps):
        for j in range(steps):
            ox, oy = start[0] + i * size0 / steps, start[1] + j * size0 / steps
            ncols, nrows = int((w0 - ox) // size0), int((h0 - oy) // size0)
            if ncols <= 0 or nrows <= 0:
                continue
            frac, covered = _grid_fractions(tissue, to_mask, (ox, oy), size0, ncols, nrows)
            passing = (frac >= min_fraction) & (frac > 0)
            if score == "tissue":
                key = (int(covered[passing].sum()),)
            else:
                key = (int(passing.sum()), -int((frac > 0).sum()))
            if best_key is None or key > best_key:
                best, best_key = (ox, oy), key
    return best


PHASE_STEPS = 4
"""Grid shifts tried per axis within one finest tile (a quarter tile: 28 µm at 20x)."""


def grid_origin(tissue: TissueSums, mask_mpp: float, slide_dims: tuple[int, int], slide_mpp: float,
                cfg: TilingConfig) -> tuple[float, float]:
    """Level-0 origin of the coarsest grid, anchored to the tissue.

    Why: a grid anchored at the slide corner cuts the tissue's edges wherever they fall; on
    small biopsies a third of the tissue can lie in tiles below ``min_tissue_fraction``.
    Shifting the whole grid (all magnifications together, so nesting is untouched) by a
    fraction of a tile recovers most of it. The finest grid's phase is chosen first, by the
    tissue its passing tiles cover; then each coarser grid's phase, among the r×r ways of
    grouping the finer tiles, by the number of its tiles that pass on their own.
    ``tissue``: the mask's ``TissueSums``.
    """
    to_mask = slide_mpp / mask_mpp
    mpps = list(cfg.magnifications.values())
    sizes = [cfg.tile_px * m / slide_mpp for m in mpps]
    origin = _best_phase(tissue, to_mask, sizes[-1], slide_dims, (0.0, 0.0), PHASE_STEPS,
                         cfg.min_tissue_fraction, "tissue")
    for level in range(len(sizes) - 2, -1, -1):
        r = round(sizes[level] / sizes[level + 1])
        # the coarser grid may start at any finer-grid line within one coarse tile
        origin = _best_phase(tissue, to_mask, sizes[level], slide_dims, origin, r,
                             cfg.min_tissue_fraction, "tiles")
    return origin


def build_grids(
    mask: np.ndarray,
    mask_mpp: float,
    slide_dims: tuple[int, int],
    slide_mpp: float,
    cfg: TilingConfig,
    *,
    origin: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """All nested tile grids of one slide as one table (see module docstring for columns).

    ``origin``: level-0 top-left of the coarsest grid (default: ``grid_origin``, anchored to
    the tissue; ``(0, 0)`` gives the slide-corner grid). The table's ``attrs`` carry
    ``origin`` and ``coverage`` (see ``coverage``); both travel in the parquet file.
    """
    w0, h0 = slide_dims
    tissue = TissueSums.of(mask)
    to_mask = slide_mpp / mask_mpp  # level-0 px -> mask px
    if origin is None:
        origin = grid_origin(tissue, mask_mpp, slide_dims, slide_mpp, cfg)
    ox, oy = float(origin[0]), float(origin[1])
    names, mpps = list(cfg.magnifications), list(cfg.magnifications.values())
    sizes = [cfg.tile_px * m / slide_mpp for m in mpps]
    ratios = [round(a / b) for a, b in itertools.pairwise(sizes)]
    ncols, nrows = max(int((w0 - ox) // sizes[0]), 0), max(int((h0 - oy) // sizes[0]), 0)

    # Bottom-up: a tile is kept if it passes on its own, or (partial) if a finer tile under it
    # is kept; finest tiles pass on their own only. Grids are [rows, cols] arrays.
    fracs, tissues = [], []
    for level, size0 in enumerate(sizes):
        scale = int(np.prod(ratios[:level], dtype=np.int64))
        frac, covered = _grid_fractions(tissue, to_mask, (ox, oy), size0, ncols * scale, nrows * scale)
        fracs.append(frac)
        tissues.append(covered)
    own = [(f >= cfg.min_tissue_fraction) & (f > 0) for f in fracs]
    keeps = list(own)
    for level in range(len(sizes) - 2, -1, -1):
        r = ratios[level]
        fine = keeps[level + 1]
        child_kept = fine.reshape(fine.shape[0] // r, r, fine.shape[1] // r, r).any(axis=(1, 3))
        keeps[level] = own[level] | child_kept
    if cfg.max_tiles is not None and keeps[0].sum() > cfg.max_tiles:
        rr, cc = np.nonzero(keeps[0])
        sub = even_subsample(cc, rr, cfg.max_tiles)
        capped = np.zeros_like(keeps[0])
        capped[rr[sub], cc[sub]] = True
        keeps[0] = capped
    # Top-down: a finer tile needs a kept parent (max_tiles may have dropped some).
    frames, coverage, total = [], {}, tissue.total
    prev_index = np.zeros((0, 0), dtype=np.int64)
    for level, (name, mpp, size0) in enumerate(zip(names, mpps, sizes, strict=True)):
        keep = keeps[level]
        if level:
            r = ratios[level - 1]
            keep = keep & np.repeat(np.repeat(prev_index >= 0, r, axis=0), r, axis=1)
        row, col = np.nonzero(keep)  # row-major, like the slide-corner grid
        index = np.full(keep.shape, -1, dtype=np.int64)
        index[row, col] = np.arange(len(row))
        if level:
            parent = prev_index[row // ratios[level - 1], col // ratios[level - 1]]
        else:
            parent = np.full(len(row), -1, dtype=np.int64)
        frames.append(pd.DataFrame({
            "magnification": name,
            "mpp": mpp,
            "tile_px": cfg.tile_px,
            "size_um": cfg.tile_px * mpp,
            "idx": np.arange(len(row), dtype=np.int64),
            "x": np.round(ox + col * size0).astype(np.int64),
            "y": np.round(oy + row * size0).astype(np.int64),
            "size0": size0,
            "col": col.astype(np.int64),
            "row": row.astype(np.int64),
            "tissue_fraction": fracs[level][row, col].astype(np.float32),
            "parent": parent.astype(np.int64),
            "partial": ~own[level][row, col],
        }))
        coverage[name] = float(tissues[level][row, col].sum()) / total if total else 0.0
        prev_index = index
    tiles = pd.concat(frames, ignore_index=True)[TILE_COLUMNS]
    tiles.attrs.update(origin=[ox, oy], coverage=coverage)
    return tiles


def empty_tiles() -> pd.DataFrame:
    """The tile table of a slide that failed or has no tissue (typed, zero rows)."""
    return pd.DataFrame({
        "magnification": pd.Series(dtype=str), "mpp": pd.Series(dtype=float),
        "tile_px": pd.Series(dtype=np.int64), "size_um": pd.Series(dtype=float),
        "idx": pd.Series(dtype=np.int64), "x": pd.Series(dtype=np.int64),
        "y": pd.Series(dtype=np.int64), "size0": pd.Series(dtype=float),
        "col": pd.Series(dtype=np.int64), "row": pd.Series(dtype=np.int64),
        "tissue_fraction": pd.Series(dtype=np.float32), "parent": pd.Series(dtype=np.int64),
        "partial": pd.Series(dtype=bool),
    })[TILE_COLUMNS]
