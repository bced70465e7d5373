"""Geometry of the nested multi-magnification grids (property tests with hypothesis)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from duopath.config import TilingConfig
from duopath.slides.tiling import box_fraction, build_grids, even_subsample, summed_area

MAG_SETS = [{"10x": 1.0, "20x": 0.5}, {"5x": 2.0, "10x": 1.0, "20x": 0.5}, {"10x": 1.0, "40x": 0.25}]


@st.composite
def slides(draw: st.DrawFn) -> tuple[np.ndarray, float, tuple[int, int], float, TilingConfig]:
    slide_mpp = draw(st.sampled_from([0.2456, 0.25, 0.2527, 0.499, 0.5]))
    w0 = draw(st.integers(2000, 12000))
    h0 = draw(st.integers(2000, 12000))
    mask_mpp = 8.0
    mw, mh = round(w0 * slide_mpp / mask_mpp), round(h0 * slide_mpp / mask_mpp)
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    mask = rng.random((max(1, mh // 4), max(1, mw // 4))) < draw(st.floats(0.1, 0.9))
    mask = np.kron(mask, np.ones((4, 4), bool))[:mh, :mw]  # blocky tissue, a few mask px wide
    cfg = TilingConfig(
        magnifications=draw(st.sampled_from(MAG_SETS)),
        tile_px=draw(st.sampled_from([64, 224, 256])),
        min_tissue_fraction=draw(st.floats(0.0, 1.0)),
        max_tiles=draw(st.one_of(st.none(), st.integers(1, 30))),
    )
    return mask, mask_mpp, (w0, h0), slide_mpp, cfg


@settings(max_examples=60, deadline=None)
@given(slides())
def test_nested_grid_invariants(case: tuple) -> None:
    mask, mask_mpp, (w0, h0), slide_mpp, cfg = case
    tiles = build_grids(mask, mask_mpp, (w0, h0), slide_mpp, cfg)
    names = list(cfg.magnifications)
    by_mag = {m: tiles[tiles["magnification"] == m].reset_index(drop=True) for m in names}
    # Every tile lies inside the slide and passes the tissue threshold.
    assert (tiles["x"] >= 0).all() and (tiles["y"] >= 0).all()
    assert (tiles["x"] + tiles["size0"] <= w0 + 1).all()
    assert (tiles["y"] + tiles["size0"] <= h0 + 1).all()
    assert (tiles["tissue_fraction"] >= cfg.min_tissue_fraction - 1e-6).all()
    coarse = by_mag[names[0]]
    assert (coarse["parent"] == -1).all()
    if cfg.max_tiles is not None:
        assert len(coarse) <= cfg.max_tiles
    for m in names:
        t = by_mag[m]
        assert (t["idx"].to_numpy() == np.arange(len(t))).all()
        assert not t.duplicated(["col", "row"]).any()
        # tile size in level-0 px is tile_px * mpp / slide_mpp: reading by µm/px, not by level
        assert np.allclose(t["size0"], cfg.tile_px * cfg.magnifications[m] / slide_mpp)
    for parent_name, child_name in itertools.pairwise(names):
        p, c = by_mag[parent_name], by_mag[child_name]
        r = round(cfg.magnifications[parent_name] / cfg.magnifications[child_name])
        assert ((c["parent"] >= 0) & (c["parent"] < len(p))).all()
        par = p.iloc[c["parent"].to_numpy()].reset_index(drop=True)
        # each child lies inside its parent (±1 px rounding) and has the parent's grid cell
        assert (c["x"] >= par["x"] - 1).all() and (c["y"] >= par["y"] - 1).all()
        assert (c["x"] + c["size0"] <= par["x"] + par["size0"] + 1).all()
        assert (c["y"] + c["size0"] <= par["y"] + par["size0"] + 1).all()
        assert (c["col"] // r == par["col"]).all() and (c["row"] // r == par["row"]).all()
        assert len(c) == 0 or c.groupby("parent").size().max() <= r * r


def test_parent_covers_exactly_its_children() -> None:
    """All tissue: every 10x tile has exactly its 2x2 20x children, edge to edge."""
    mask = np.ones((100, 100), bool)
    tiles = build_grids(mask, 8.0, (3200, 3200), 0.25, TilingConfig())
    p = tiles[tiles["magnification"] == "10x"]
    c = tiles[tiles["magnification"] == "20x"]
    assert len(c) == 4 * len(p)
    for pid, kids in c.groupby("parent"):
        parent = p.iloc[pid]
        assert sorted(kids["x"].unique()) == [parent["x"], parent["x"] + 448]
        assert sorted(kids["y"].unique()) == [parent["y"], parent["y"] + 448]


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**16))
def test_box_fraction_matches_brute_force(h: int, w: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((h, w)) < 0.5
    sat = summed_area(mask)
    x0 = rng.integers(0, w, 20)
    y0 = rng.integers(0, h, 20)
    x1 = x0 + rng.integers(1, w + 1, 20)
    y1 = y0 + rng.integers(1, h + 1, 20)
    got = box_fraction(sat, x0, y0, x1, y1)
    for i in range(20):
        box = mask[y0[i] : min(y1[i], h), x0[i] : min(x1[i], w)]
        assert np.isclose(got[i], box.mean())


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 30), st.integers(1, 30), st.integers(1, 200))
def test_even_subsample_spreads_over_the_grid(nc: int, nr: int, k: int) -> None:
    cc, rr = np.meshgrid(np.arange(nc), np.arange(nr))
    col, row = cc.ravel(), rr.ravel()
    idx = even_subsample(col, row, k)
    assert len(idx) == min(k, nc * nr)
    assert len(np.unique(idx)) == len(idx)
    assert (np.diff(idx) > 0).all()
    np.testing.assert_array_equal(idx, even_subsample(col, row, k))  # deterministic
    if k >= 4 and nc >= 8 and nr >= 8 and k < nc * nr:
        # each quadrant of the grid gets picks
        q = (col[idx] >= nc // 2).astype(int) + 2 * (row[idx] >= nr // 2).astype(int)
        assert set(q) == {0, 1, 2, 3}


def test_max_tiles_keeps_children_of_kept_parents() -> None:
    mask = np.ones((200, 200), bool)
    cfg = TilingConfig(max_tiles=10)
    tiles = build_grids(mask, 8.0, (6400, 6400), 0.25, cfg)
    p = tiles[tiles["magnification"] == "10x"]
    c = tiles[tiles["magnification"] == "20x"]
    assert len(p) == 10 and len(c) == 40
    assert isinstance(tiles, pd.DataFrame)
