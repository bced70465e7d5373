"""`duopath predict` on hostile input: one clear error line, exit 1, no traceback, and no
partial ``work/`` or ``prediction.json`` left behind. The "pass --mpp" hint appears only when
the slide lacks an mpp (it used to be appended to every unreadable slide)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from test_predict import tiny_student
from typer.testing import CliRunner

from duopath.cli import app
from duopath.layout import FOLD_FILES

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CASES = {
    "blank": "no tissue found",
    "tiny": "the slide is only 24 × 24 µm",
    "damaged_full_res": "cannot read its pixel data at level 0",
    "damaged_thumbnail": "cannot read its pixel data at level 1",
    "not_a_slide": "OpenSlide cannot open it",
    "missing": "does not exist",
    "no_mpp": "pass --mpp",
}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("model")
    tiny_student(d / FOLD_FILES["checkpoint"])
    return d


def _predict(slide: Path, model: Path, out: Path, caplog: pytest.LogCaptureFixture) -> list[str]:
    """Run `duopath predict` in process; exit code 1 by `typer.Exit`, not an exception, and the
    ERROR lines it logged."""
    caplog.clear()
    with caplog.at_level(logging.INFO):
        res = CliRunner().invoke(app, ["predict", str(slide), "--model", str(model), "--out", str(out)])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), repr(res.exception)
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def _assert_one_clean_error(errors: list[str], out: Path, expected: str) -> str:
    assert len(errors) == 1 and "\n" not in errors[0], errors
    assert expected in errors[0], errors[0]
    assert not out.exists(), sorted(p.name for p in out.rglob("*"))  # no work/, no JSON, no folder
    return errors[0]


@pytest.mark.parametrize("kind", sorted(CASES))
def test_bad_slide_is_one_error_line(kind: str, bad_slides: dict, model: Path, tmp_path: Path,
                                    caplog: pytest.LogCaptureFixture) -> None:
    slide = bad_slides.get(kind, tmp_path / "missing.tiff")
    line = _assert_one_clean_error(_predict(slide, model, tmp_path / "out", caplog), tmp_path / "out",
                                   CASES[kind])
    assert ("--mpp" in line) == (kind == "no_mpp"), line


def test_corrupt_checkpoint_is_one_error_line(bad_slides: dict, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    bad = tmp_path / "model"
    bad.mkdir()
    (bad / FOLD_FILES["checkpoint"]).write_bytes(np.random.default_rng(0).bytes(4096))
    line = _assert_one_clean_error(_predict(bad_slides["good"], bad, tmp_path / "out", caplog),
                                   tmp_path / "out", "cannot load a student model")
    assert "--mpp" not in line
