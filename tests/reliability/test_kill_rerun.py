"""kill -9 in the middle of `duopath embed` and of `duopath train`, then the same command again:
the outputs are identical to an uninterrupted run's (nothing half-written is taken for done),
and two from-scratch trainings with one seed predict identically.

The commands run as the rules run them (the CLI in its own process group, DataLoader workers
included), and are killed once their log shows the work has started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from test_training_trainer import build_cohort, small_cfg

from duopath.config import SegmentationConfig, TilingConfig
from duopath.slides.stages import segment_slide, tile_slide

pytestmark = pytest.mark.slow

DUOPATH = [sys.executable, "-m", "duopath.cli"]


def _run(args: list[str], log: Path) -> int:
    with log.open("w") as fh:
        return subprocess.run(DUOPATH + args, stdout=fh, stderr=subprocess.STDOUT, timeout=600).returncode


def _run_and_kill(args: list[str], log: Path, started: str) -> None:
    """Start the command, SIGKILL its whole process group once ``started`` is in its log."""
    with log.open("w") as fh:
        proc = subprocess.Popen(DUOPATH + args, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + 300
    while started not in log.read_text() and proc.poll() is None:
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.05)
    assert proc.poll() is None, f"finished before it could be killed:\n{log.read_text()[-2000:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def _store_arrays(store: Path) -> dict[str, np.ndarray]:
    root = zarr.open_group(str(store), mode="r")
    return {f"{g}/{a}": np.asarray(root[g][a][...]) for g in sorted(root.group_keys())
            for a in ("features", "coords", "parent", "tissue_fraction")}


def test_embed_killed_then_rerun_gives_identical_features(bad_slides: dict, tmp_path: Path) -> None:
    slide = bad_slides["good"]
    segment_slide(slide, "good", SegmentationConfig(), mask_png=tmp_path / "m.png",
                  mask_json=tmp_path / "m.json", qc_image=tmp_path / "qc.jpg")
    tile_slide(tmp_path / "m.png", tmp_path / "m.json", TilingConfig(), tiles_out=tmp_path / "t.parquet")

    def args(out: Path) -> list[str]:
        return ["embed", str(slide), "--tiles", str(tmp_path / "t.parquet"), "--slide-id", "good",
                "--settings", json.dumps({"num_workers": 1, "batch_size": 4}), "--out", str(out)]

    reference, store = tmp_path / "reference.zarr", tmp_path / "features" / "good.zarr"
    assert _run(args(reference), tmp_path / "reference.log") == 0
    _run_and_kill(args(store), tmp_path / "killed.log", started="encoder efficientnet_lite0")
    assert not store.exists()  # killed before the rename: no store that looks finished
    assert _run(args(store), tmp_path / "rerun.log") == 0
    assert sorted(p.name for p in store.parent.iterdir()) == ["good.zarr"]  # no temporaries left
    ref, got = _store_arrays(reference), _store_arrays(store)
    assert ref.keys() == got.keys() and len(ref) == 8
    for key in ref:
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)
    assert zarr.open_group(str(store), mode="r").attrs["status"] == "ok"


def test_train_killed_then_rerun_gives_identical_predictions(tmp_path: Path) -> None:
    """The reference and the re-run are two from-scratch runs with one seed: identical."""
    cohort = build_cohort(tmp_path)

    def args(out: Path) -> list[str]:
        return ["train", "--sheet", str(cohort["sheet"]), "--splits", str(cohort["splits"]),
                "--features-dir", str(cohort["features"]), "--rna", str(cohort["rna"]), "--fold", "0",
                "--model", "teacher", "--task", "survival", "--seed", "5", "--threads", "1",
                "--settings", small_cfg(epochs=4).model_dump_json(), "--no-progress",
                "--out-dir", str(out)]

    reference, out = tmp_path / "reference", tmp_path / "teacher" / "fold0"
    assert _run(args(reference), tmp_path / "reference.log") == 0
    _run_and_kill(args(out), tmp_path / "killed.log", started="epoch 0:")
    assert not (out / "metrics.json").exists() and not (out / "predictions.parquet").exists()
    assert _run(args(out), tmp_path / "rerun.log") == 0
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name]
    for name in ("predictions.parquet", "inner_predictions.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(out / name), pd.read_parquet(reference / name))
    ref = json.loads((reference / "metrics.json").read_text())
    got = json.loads((out / "metrics.json").read_text())
    assert got["test"] == ref["test"] and got["val_selected"] == ref["val_selected"]
    assert got["best_epoch"] == ref["best_epoch"]
