"""No code runs from a checkpoint, and a bad checkpoint gets one clear error line (issue 12, item 1).

A crafted pickle whose unpickling would create a marker file is handed to every command that
loads a trained model -- ``predict``, ``heatmaps``, ``train-student --teacher`` -- and to the
report's heatmap code; the marker must never appear. A control proves the file is live:
``torch.load(..., weights_only=False)`` (what duopath did before) does create it. Random bytes,
a truncated file and a checkpoint of the wrong kind each end with exit status 1, no traceback
and one ERROR line naming the file.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from duopath.checkpoints import CheckpointError, read_checkpoint, save_checkpoint
from duopath.cli import app
from duopath.layout import FOLD_FILES
from duopath.models import build_model

CKPT = FOLD_FILES["checkpoint"]
SLIDE = Path(str(files("duopath") / "data" / "slides" / "CMU-1-Small-Region.svs"))
MAGS = ["10x", "20x"]
BAD_KINDS = ("pickle", "random", "truncated", "wrong_kind")


class _Payload:
    """Unpickling this runs ``exec``, which writes the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",))


def _evil(path: Path, marker: Path) -> Path:
    """A torch-style pickled checkpoint that would run code when loaded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "duopath-student/1", "state_dict": {}, "x": _Payload(marker)}, path)
    return path


def _model(kind: str) -> tuple[torch.nn.Module, dict]:
    if kind == "student":
        kw = {"feature_dim": 8, "n_classes": 4, "magnifications": MAGS, "dim": 8, "n_heads": 2}
        name = "student"
    elif kind == "teacher":
        kw = {"feature_dim": 8, "n_genes_T": 3, "n_genes_E": 3, "n_classes": 4, "magnifications": MAGS,
              "dim": 8, "n_heads": 2, "n_gene_tokens": 2, "gene_hidden": 8, "attention": "cross"}
        name = "teacher"
    else:
        kw = {"feature_dim": 8, "n_genes_T": 0, "n_genes_E": 0, "n_classes": 4, "magnifications": MAGS,
              "dim": 8, "n_heads": 2}
        name = "abmil"
    return build_model(name, kw), {"model_name": name, "model_kwargs": kw, "fold": 0, "task": "survival",
                                   "magnifications": MAGS}


def _valid(path: Path, kind: str) -> Path:
    model, meta = _model(kind)
    save_checkpoint(path, kind, model, meta)
    return path


def _bad(path: Path, how: str, wrong_kind: str, marker: Path) -> Path:
    """A checkpoint that must be refused: ``how`` in BAD_KINDS (``wrong_kind``: the kind to write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "pickle":
        return _evil(path, marker)
    if how == "random":
        path.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0),
                                       dtype=torch.uint8).numpy().tobytes())
        return path
    _valid(path, wrong_kind)
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return path


def test_the_crafted_pickle_is_live(tmp_path: Path) -> None:
    """Control: the payload does run under the loader duopath used before (weights_only=False)."""
    marker = tmp_path / "marker"
    torch.load(_evil(tmp_path / "evil.pt", marker), weights_only=False)
    assert marker.exists()


def test_round_trip_and_refusals(tmp_path: Path) -> None:
    path = _valid(tmp_path / CKPT, "student")
    ck = read_checkpoint(path, ("student",))
    model, _ = _model("student")
    assert ck.kind == "student" and ck.meta["fold"] == 0 and set(ck.state) == set(model.state_dict())
    marker = tmp_path / "marker"
    for how in BAD_KINDS:
        bad = _bad(tmp_path / how / CKPT, how, "teacher", marker)
        with pytest.raises(CheckpointError, match=str(bad.parent.name)) as err:
            read_checkpoint(bad, ("student",))
        assert "\n" not in str(err.value)
    assert not marker.exists()


def _one_error_line(caplog: pytest.LogCaptureFixture, result, path: Path) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    message = errors[0].getMessage()
    assert str(path) in message and "\n" not in message


@pytest.mark.parametrize("how", BAD_KINDS)
def test_heatmaps_refuses(how: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    marker = tmp_path / "marker"
    ckpt = _bad(tmp_path / "m" / CKPT, how, "baseline", marker)
    caplog.set_level(logging.INFO)
    res = CliRunner().invoke(app, ["heatmaps", "--checkpoint", str(ckpt), "--predictions",
                                   str(tmp_path / "p"), "--sheet", str(tmp_path / "s.csv"),
                                   "--features-dir", str(tmp_path),
                                   "--out", str(tmp_path / "h")])
    _one_error_line(caplog, res, ckpt)
    assert not marker.exists() and not (tmp_path / "h").exists()


@pytest.mark.parametrize("how", BAD_KINDS)
def test_train_student_refuses_its_teacher(how: str, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    marker = tmp_path / "marker"
    teacher = _bad(tmp_path / "teacher" / CKPT, how, "student", marker)
    caplog.set_level(logging.INFO)
    res = CliRunner().invoke(app, ["train-student", "--sheet", str(tmp_path / "s.csv"), "--splits",
                                   str(tmp_path / "sp.csv"), "--rna", str(tmp_path / "r.h5ad"),
                                   "--features-dir", str(tmp_path), "--teacher", str(teacher), "--fold", "0",
                                   "--settings", "{}", "--out-dir", str(tmp_path / "out"), "--no-progress"])
    _one_error_line(caplog, res, teacher)
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_report_heatmap_code_refuses_a_pickle(tmp_path: Path) -> None:
    from duopath.report.fold_heatmaps import HeatmapError, write_fold_heatmaps

    marker = tmp_path / "marker"
    evil = _evil(tmp_path / CKPT, marker)
    with pytest.raises(HeatmapError, match="not a duopath"):
        write_fold_heatmaps(evil, tmp_path / "p", tmp_path / "s.csv", tmp_path, tmp_path / "h")
    assert not marker.exists()


@pytest.mark.parametrize("how", BAD_KINDS)
def test_predict_refuses_in_one_line(how: str, tmp_path: Path) -> None:
    """A real ``duopath predict`` process: exit 1, one ERROR line naming the file, no traceback,
    no code ran."""
    marker = tmp_path / "marker"
    model_dir = tmp_path / "model"
    ckpt = _bad(model_dir / CKPT, how, "teacher", marker)
    cmd = [sys.executable, "-m", "duopath.cli", "predict", str(SLIDE), "--model", str(model_dir),
           "--out", str(tmp_path / "out")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if " ERROR " in ln]
    assert "Traceback" not in proc.stderr
    assert len(errors) == 1 and str(ckpt) in errors[0], proc.stderr
    assert not marker.exists() and not (tmp_path / "out").exists()
