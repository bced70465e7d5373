"""Patient bags: zarr → µm centres, pooling slides with parent offsets, subsampling, padding,
failed stores, caching, and the per-fold RNA scaler. Also the synthetic-store writer that
``test_training_trainer.py`` reuses (stores written by the extractor's own group writer)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import zarr

from duopath.encoding.extract import write_feature_group
from duopath.training.batch import Sample, collate
from duopath.training.data import (
    SLIDE_GAP_TILES,
    BagStore,
    DataError,
    pool_slides,
    read_slide,
    subsample_bag,
)
from duopath.training.genes import fold_genes

D = 12
SLIDE_MPP = 0.5
SIZE0 = {"10x": 448.0, "20x": 224.0}  # level-0 px of a 224 px tile at 1.0 / 0.5 µm/px
MAGS = ("10x", "20x")


def write_store(
    path: Path,
    tiles10: np.ndarray,
    feats10: np.ndarray,
    feats20: np.ndarray,
    *,
    slide_id: str | None = None,
    encoder: str = "synthetic",
    status: str = "ok",
) -> Path:
    """A feature store in the extractor's layout: ``tiles10`` [N, 2] level-0 px top-left corners;
    each 10x tile gets its 2×2 20x children (rows 4t..4t+3, parent t)."""
    root = zarr.open_group(str(path), mode="w")
    root.attrs.update({"encoder": encoder, "weights_id": f"{encoder}:v1", "dim": D,
                       "slide_id": slide_id or path.stem, "slide_mpp": SLIDE_MPP, "status": status,
                       "n_tiles": 0})
    if status != "ok":
        return path
    kids = np.array([[0, 0], [0, 224], [224, 0], [224, 224]])
    tiles20 = (tiles10[:, None, :] + kids[None]).reshape(-1, 2)
    for mag, xy, parent, feats in (
        ("10x", tiles10, np.full(len(tiles10), -1), feats10),
        ("20x", tiles20, np.repeat(np.arange(len(tiles10)), 4), feats20),
    ):
        mpp = 1.0 if mag == "10x" else 0.5
        rows = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "parent": parent,
                             "tissue_fraction": np.ones(len(xy)), "mpp": mpp, "tile_px": 224,
                             "size_um": 224 * mpp, "size0": SIZE0[mag]})
        write_feature_group(root, mag, rows, feats.astype(np.float16))
    return path


def grid(side_x: int, side_y: int, origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    ij = np.stack(np.meshgrid(np.arange(side_x), np.arange(side_y), indexing="ij"), -1).reshape(-1, 2)
    return ij * 448 + np.asarray(origin)


def slide_with_ids(path: Path, tiles10: np.ndarray, tag: float) -> Path:
    """Features that encode (tag, row index) so rows can be traced through pooling."""
    n = len(tiles10)
    f10 = np.zeros((n, D))
    f10[:, 0], f10[:, 1] = tag, np.arange(n)
    f20 = np.zeros((4 * n, D))
    f20[:, 0], f20[:, 1] = tag, np.arange(4 * n)
    return write_store(path, tiles10, f10, f20)


def test_read_slide_converts_to_micron_centres(tmp_path: Path) -> None:
    p = slide_with_ids(tmp_path / "s.zarr", grid(2, 1, origin=(1000, 2000)), 1.0)
    bag = read_slide(p, MAGS)
    # 10x tile at px (1000, 2000), 448 px wide at 0.5 µm/px: centre (1224, 2224) px = (612, 1112) µm
    np.testing.assert_allclose(bag["10x"].coords[0], [612.0, 1112.0])
    np.testing.assert_allclose(bag["20x"].coords[0], [(1000 + 112) * 0.5, (2000 + 112) * 0.5])
    assert bag["10x"].feats.dtype == np.float16
    np.testing.assert_array_equal(bag["20x"].parent, np.repeat([0, 1], 4))


def test_pooling_two_slides_offsets_parents_and_separates_space(tmp_path: Path) -> None:
    a = read_slide(slide_with_ids(tmp_path / "a.zarr", grid(3, 2), 1.0), MAGS)
    b = read_slide(slide_with_ids(tmp_path / "b.zarr", grid(2, 2), 2.0), MAGS)
    pooled = pool_slides([a, b], MAGS)
    assert len(pooled["10x"]) == 6 + 4 and len(pooled["20x"]) == 24 + 16
    np.testing.assert_array_equal(pooled["10x"].slide, [0] * 6 + [1] * 4)
    np.testing.assert_array_equal(pooled["10x"].parent, -1)
    # every 20x tile's parent is a 10x tile of the SAME slide, and it lies inside that tile
    par = pooled["20x"].parent
    assert par.min() == 0 and par.max() == 9
    np.testing.assert_array_equal(pooled["10x"].slide[par], pooled["20x"].slide)
    np.testing.assert_array_equal(pooled["10x"].feats[par, 0], pooled["20x"].feats[:, 0])
    delta = np.abs(pooled["20x"].coords - pooled["10x"].coords[par])
    np.testing.assert_allclose(delta, 56.0)  # 20x centre is a quarter of 224 µm off the 10x centre
    # second slide starts after the first ends, with a gap of SLIDE_GAP_TILES coarse tiles
    xa = pooled["10x"].coords[pooled["10x"].slide == 0, 0]
    xb = pooled["10x"].coords[pooled["10x"].slide == 1, 0]
    np.testing.assert_allclose(xb.min() - xa.max(), (SLIDE_GAP_TILES + 1) * 224.0)
    # relative layout inside each slide is unchanged
    np.testing.assert_allclose(np.diff(np.unique(xb)), 224.0)
    # a one-tile slide still gets a gap of whole tiles (its width comes from the store, not coords)
    c = read_slide(slide_with_ids(tmp_path / "c.zarr", grid(1, 1), 3.0), MAGS)
    two = pool_slides([c, a], MAGS)["10x"]
    np.testing.assert_allclose(two.coords[1:, 0].min() - two.coords[0, 0], (SLIDE_GAP_TILES + 1) * 224.0)


def test_subsampling_keeps_children_and_remaps_parents(tmp_path: Path) -> None:
    a = read_slide(slide_with_ids(tmp_path / "a.zarr", grid(4, 4), 1.0), MAGS)
    b = read_slide(slide_with_ids(tmp_path / "b.zarr", grid(3, 3), 2.0), MAGS)
    from duopath.training.data import PatientBag

    bag = PatientBag("P", ("a", "b"), pool_slides([a, b], MAGS))
    sub = subsample_bag(bag, MAGS, 7, np.random.default_rng(0))
    assert len(sub.mags["10x"]) == 7 and len(sub.mags["20x"]) == 28  # all 4 children of each
    par = sub.mags["20x"].parent
    assert par.min() >= 0 and par.max() < 7
    # the remapped parent is the same tissue: it encloses the child and is its original parent
    np.testing.assert_array_equal(sub.mags["10x"].feats[par, 0], sub.mags["20x"].feats[:, 0])
    np.testing.assert_allclose(np.abs(sub.mags["20x"].coords - sub.mags["10x"].coords[par]), 56.0)
    orig_row = sub.mags["20x"].feats[:, 1].astype(int) // 4  # 20x row 4t+k has parent t
    np.testing.assert_array_equal(sub.mags["10x"].feats[par, 1].astype(int), orig_row)
    # deterministic for a seed, different for another, full bag when under the cap
    again = subsample_bag(bag, MAGS, 7, np.random.default_rng(0))
    np.testing.assert_array_equal(again.mags["20x"].coords, sub.mags["20x"].coords)
    other = subsample_bag(bag, MAGS, 7, np.random.default_rng(1))
    assert not np.array_equal(other.mags["10x"].coords, sub.mags["10x"].coords)
    assert subsample_bag(bag, MAGS, 100, np.random.default_rng(0)) is bag
    assert subsample_bag(bag, MAGS, None, np.random.default_rng(0)) is bag


def test_collate_pads_and_masks(tmp_path: Path) -> None:
    from duopath.training.data import PatientBag

    bags = [PatientBag(p, (p,), read_slide(slide_with_ids(tmp_path / f"{p}.zarr", grid(*s), 1.0), MAGS))
            for p, s in (("P1", (2, 2)), ("P2", (3, 1)), ("P3", (1, 1)))]
    samples = [Sample(b.patient_id, np.zeros(3, np.float32), np.ones(2, np.float32), i, 1.0, 5.0, "x")
               for i, b in enumerate(bags)]
    batch = collate(samples, bags, MAGS)
    assert batch.feats["10x"].shape == (3, 4, D) and batch.feats["20x"].shape == (3, 16, D)
    assert batch.mask["10x"].sum(1).tolist() == [4, 3, 1]
    assert batch.mask["20x"].sum(1).tolist() == [16, 12, 4]
    assert (batch.parent["20x"][~batch.mask["20x"]] == -1).all()
    assert (batch.parent["20x"][2, :4] == 0).all()
    assert batch.feats["10x"][2, 1:].abs().sum() == 0
    assert batch.targets.tolist() == [0, 1, 2] and batch.genes_T.shape == (3, 3)
    with pytest.raises(ValueError, match="bag of P2"):
        collate(samples[:2], bags[1:], MAGS)


def test_bag_store_pools_skips_failed_and_caches(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    slide_with_ids(tmp_path / "A1.zarr", grid(2, 2), 1.0)
    slide_with_ids(tmp_path / "A2.zarr", grid(1, 2), 2.0)
    write_store(tmp_path / "A3.zarr", grid(1, 1), np.zeros((1, D)), np.zeros((4, D)), status="failed")
    write_store(tmp_path / "B1.zarr", grid(1, 1), np.zeros((1, D)), np.zeros((4, D)), status="empty")
    slide_with_ids(tmp_path / "C1.zarr", grid(3, 3), 3.0)
    with caplog.at_level(logging.WARNING):
        store = BagStore({"A": ["A1", "A2", "A3"], "B": ["B1"], "C": ["C1"]}, tmp_path)
    assert store.patients == ["A", "C"] and store.excluded == {"B": "no usable slide"}
    assert "A3" in caplog.text and "patient B has no usable slide" in caplog.text
    assert store.magnifications == MAGS and store.feature_dim == D
    bag = store.get("A")
    assert bag.slides == ("A1", "A2") and bag.n_tiles() == {"10x": 6, "20x": 24}
    assert store.get("A") is bag and store.reads == 1
    tiny = BagStore({"A": ["A1", "A2"]}, tmp_path, cache_bytes=0)
    tiny.get("A")
    tiny.get("A")
    assert tiny.reads == 2
    with pytest.raises(DataError, match="no usable feature store"):
        store.get("B")


def test_bag_store_rejects_mixed_encoders(tmp_path: Path) -> None:
    slide_with_ids(tmp_path / "A1.zarr", grid(1, 1), 1.0)
    write_store(tmp_path / "B1.zarr", grid(1, 1), np.zeros((1, D)), np.zeros((4, D)), encoder="other")
    with pytest.raises(DataError, match="mix encoders"):
        BagStore({"A": ["A1"], "B": ["B1"]}, tmp_path)


def rna_adata(patients: list[str], values: np.ndarray, n_t: int, without: list[str] | None = None):
    import anndata as ad

    genes = [f"G{i}" for i in range(values.shape[1])]
    adata = ad.AnnData(X=values.astype(np.float32), obs=pd.DataFrame(index=patients),
                       var=pd.DataFrame(index=genes))
    adata.var["group_T"] = [i < n_t for i in range(len(genes))]
    adata.var["group_E"] = [i >= n_t for i in range(len(genes))]
    adata.uns["patients_without_rna"] = np.array(without or [], dtype=object)
    return adata


def test_fold_genes_scaler_uses_training_patients_only() -> None:
    rng = np.random.default_rng(0)
    pats = [f"P{i}" for i in range(8)]
    x = rng.normal(size=(8, 5))
    adata = rna_adata(pats, x, n_t=3, without=["P9"])
    train, held = pats[:5], pats[5:]
    fg = fold_genes(adata, train, held, [*pats, "P9"], missing_rna="exclude")
    np.testing.assert_allclose(fg.mean.to_numpy(), x[:5].mean(0), rtol=1e-5)
    expected = (x[6, :3] - x[:5, :3].mean(0)) / x[:5, :3].std(0)
    np.testing.assert_allclose(fg.values["P6"][0], expected, rtol=1e-4)
    np.testing.assert_allclose(fg.train_mean_T, 0.0, atol=1e-6)
    assert "P9" not in fg.values and fg.imputed == []
    # changing held-out patients' RNA changes nothing fit
    x2 = x.copy()
    x2[5:] += 100.0
    fg2 = fold_genes(rna_adata(pats, x2, n_t=3, without=["P9"]), train, held, pats)
    np.testing.assert_allclose(fg2.mean.to_numpy(), fg.mean.to_numpy())
    np.testing.assert_allclose(fg2.values["P0"][1], fg.values["P0"][1])
    # missing RNA → training mean under "mean"
    fg3 = fold_genes(adata, train, held, [*pats, "P9"], missing_rna="mean")
    assert fg3.imputed == ["P9"]
    np.testing.assert_allclose(fg3.values["P9"][0], fg3.train_mean_T)
    from duopath.rna.normalise import ScalerLeakError

    with pytest.raises(ScalerLeakError):
        fold_genes(adata, train, [pats[0]], pats)


def test_batch_moves_to_device(tmp_path: Path) -> None:
    from duopath.training.data import PatientBag

    bag = PatientBag("P", ("P",), read_slide(slide_with_ids(tmp_path / "P.zarr", grid(1, 1), 1.0), MAGS))
    s = Sample("P", np.zeros(2, np.float32), np.zeros(2, np.float32), 0, 1.0, 1.0)
    batch = collate([s], [bag], MAGS).to("cpu")
    assert batch.coords["20x"].dtype == torch.float32 and batch.parent["20x"].dtype == torch.int64
