"""``duopath predict --sheet``: a cohort's slides through a trained student, one table out; a bad
slide is listed with its error and does not stop the others."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from test_predict import CKPT, SLIDE, tiny_student
from typer.testing import CliRunner

from duopath.cli import app

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def test_batch_prediction_writes_one_table(tmp_path: Path) -> None:
    tiny_student(tmp_path / "model" / CKPT)
    slides = tmp_path / "slides"
    slides.mkdir()
    shutil.copy(SLIDE, slides / "a.svs")
    (slides / "broken.svs").write_bytes(b"not a slide" * 100)
    pd.DataFrame({"patient_id": ["P1", "P2"], "slide_path": ["a.svs", "broken.svs"],
                  "time": ["12", "30"], "event": ["1", "0"]}).to_csv(tmp_path / "cohort.csv", index=False)
    out = tmp_path / "pred"
    res = CliRunner().invoke(app, ["predict", "--sheet", str(tmp_path / "cohort.csv"), "--slide-dir",
                                   str(slides), "--model", str(tmp_path / "model"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "1 of 2 patients predicted" in res.output
    table = pd.read_csv(out / "predictions.csv", dtype={"time": str, "event": str}).set_index("patient_id")
    assert table.loc["P1", "status"] == "ok" and pd.notna(table.loc["P1", "risk"])
    assert table.loc["P1", "n_tiles"] > 0 and table.loc["P1", "time"] == "12"
    assert table.loc["P2", "status"] == "failed" and "broken.svs" in table.loc["P2", "error"]
    assert (out / "patients" / "P1" / "prediction.json").exists()
    # the same patient predicted alone gives the same risk
    alone = CliRunner().invoke(app, ["predict", str(slides / "a.svs"), "--model", str(tmp_path / "model"),
                                     "--out", str(tmp_path / "alone")])
    assert alone.exit_code == 0, alone.output
    single = pd.read_json(tmp_path / "alone" / "prediction.json", typ="series")
    assert single["risk"] == pytest.approx(table.loc["P1", "risk"], abs=1e-5)
