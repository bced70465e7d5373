"""Bad sample sheets and configs: every one stops `duopath validate` (exit 1) with an error that
names the file and line, before any slide is opened (README troubleshooting table)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from duopath.cohort import SampleSheetError, read_sample_sheet
from duopath.config import CohortConfig

N_PATIENTS = 6


def _slides(tmp_path: Path, n: int = N_PATIENTS) -> Path:
    d = tmp_path / "slides"
    d.mkdir(exist_ok=True)
    for i in range(n):
        (d / f"s{i}.svs").write_bytes(b"x")
    return d


def _rows(n: int = N_PATIENTS, **columns: list[str]) -> list[dict]:
    rows = [{"patient_id": f"P{i}", "slide_id": f"s{i}", "slide_path": f"s{i}.svs",
             "time": str(10 + i), "event": str(i % 2), "grade": "high" if i % 2 else "low"}
            for i in range(n)]
    for col, values in columns.items():
        for row, value in zip(rows, values, strict=False):
            row[col] = value
    return rows


def _sheet(tmp_path: Path, rows: list[dict], **cohort: object) -> CohortConfig:
    path = tmp_path / "samples.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return CohortConfig(sample_sheet=path, slide_dir=_slides(tmp_path), **cohort)


CLASSIFICATION = {"tasks": ["classification"], "label_column": "grade"}


@pytest.mark.parametrize("missing", ["NaN", "NA", "nan", "", "[Not Available]", "'--", "null"])
def test_missing_class_label_is_never_a_class(tmp_path: Path, missing: str) -> None:
    """`keep_default_na=False` let "NaN" through as a third class next to high/low."""
    rows = _rows(grade=["high", missing, "low", missing, "high", "low"])
    with pytest.raises(SampleSheetError) as info:
        read_sample_sheet(_sheet(tmp_path, rows, **CLASSIFICATION))
    msg = str(info.value)
    for line in (3, 5):  # both rows named, header is line 1
        assert f"line {line}, column grade: missing label" in msg
    assert "line 2," not in msg and "line 4," not in msg


def test_missing_label_is_ignored_when_no_task_needs_it(tmp_path: Path) -> None:
    rows = _rows(grade=["high", "NaN", "low", "NA", "high", "low"])
    sheet = read_sample_sheet(_sheet(tmp_path, rows, label_column="grade"))  # survival only
    assert sheet["label"].tolist() == ["high", "", "low", "", "high", "low"]


@pytest.mark.parametrize(("column", "value"), [
    ("time", "NaN"), ("time", "NA"), ("time", "-3"), ("time", "inf"), ("time", "soon"), ("time", ""),
    ("event", "NA"), ("event", "2"), ("event", "maybe"), ("event", ""),
])
def test_bad_time_or_event_names_line_and_column(tmp_path: Path, column: str, value: str) -> None:
    rows = _rows(**{column: ["5", value, "7", "8", "9", "10"] if column == "time"
                    else ["1", value, "0", "1", "0", "1"]})
    with pytest.raises(SampleSheetError, match=rf"samples\.csv, line 3, column {column}: "):
        read_sample_sheet(_sheet(tmp_path, rows))


def test_duplicated_slide_id_names_both_lines(tmp_path: Path) -> None:
    rows = _rows(slide_id=["s0", "s1", "s1"])
    with pytest.raises(SampleSheetError, match=r"slide_id s1 is listed 2 times: line 3 \(.*\), line 4"):
        read_sample_sheet(_sheet(tmp_path, rows))


def test_one_slide_file_under_two_slide_ids_names_both_lines(tmp_path: Path) -> None:
    """It was pooled twice into the patient's bag without a word."""
    rows = _rows(patient_id=["P0", "P1", "P1"], slide_path=["s0.svs", "s1.svs", "s1.svs"],
                 time=["10", "11", "11"], event=["0", "1", "1"])
    with pytest.raises(SampleSheetError) as info:
        read_sample_sheet(_sheet(tmp_path, rows))
    msg = str(info.value)
    assert "s1.svs is listed 2 times" in msg
    assert "line 3 (slide_id s1, patient P1), line 4 (slide_id s2, patient P1)" in msg


def test_one_patient_with_two_outcomes_names_the_lines(tmp_path: Path) -> None:
    rows = _rows(patient_id=["P0", "P1", "P1"], time=["10", "11", "40"])
    with pytest.raises(SampleSheetError, match=r"patient P1 has different time values: line 3 \(11\.0\), "
                       r"line 4 \(40\.0\)"):
        read_sample_sheet(_sheet(tmp_path, rows))


def test_missing_slide_file_names_line(tmp_path: Path) -> None:
    rows = _rows(slide_path=["s0.svs", "gone.svs"])
    with pytest.raises(SampleSheetError, match=r"line 3, column slide_path: .*gone\.svs does not exist"):
        read_sample_sheet(_sheet(tmp_path, rows))


# --- `duopath validate` on whole configs -------------------------------------------------------

def _validate(tmp_path: Path, config: dict) -> subprocess.CompletedProcess:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return subprocess.run([sys.executable, "-m", "duopath.cli", "validate", str(path)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)


def _user_config(tmp_path: Path, n: int = N_PATIENTS, **extra: object) -> dict:
    pd.DataFrame(_rows(n)).to_csv(tmp_path / "samples.csv", index=False)
    _slides(tmp_path, n)
    return {"cohorts": {"mine": {"sample_sheet": "samples.csv", "slide_dir": "slides"}}, **extra}


def _error_lines(run: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in run.stderr.splitlines() if " ERROR " in ln]


def test_validate_accepts_a_good_config(tmp_path: Path) -> None:
    run = _validate(tmp_path, _user_config(tmp_path, training={"folds": 3}))
    assert run.returncode == 0, run.stderr
    assert "mine: 6 patients, 6 slides" in run.stdout


def test_validate_catches_more_folds_than_patients(tmp_path: Path) -> None:
    """Caught only in the splits job before, after every slide was embedded."""
    run = _validate(tmp_path, _user_config(tmp_path, training={"folds": 5}))
    assert run.returncode == 1
    (line,) = _error_lines(run)
    assert "cohort mine: 6 patients cannot make training.folds = 5 folds" in line
    assert "lower training.folds to at most 3" in line and "samples.csv" in line


def test_validate_rejects_a_non_ascii_cohort_name(tmp_path: Path) -> None:
    """Passed validation and failed in Snakemake with a MissingInputException."""
    config = _user_config(tmp_path)
    config["cohorts"] = {"kohorte_ü": config["cohorts"]["mine"]}
    run = _validate(tmp_path, config)
    assert run.returncode == 1
    assert "cohort name 'kohorte_ü': use ASCII letters" in run.stderr


def test_validate_names_an_unknown_key(tmp_path: Path) -> None:
    run = _validate(tmp_path, _user_config(tmp_path, tiling={"min_tisue_fraction": 0.5}))
    assert run.returncode == 1
    assert "tiling.min_tisue_fraction: unknown key" in run.stderr


def test_validate_names_a_missing_sheet(tmp_path: Path) -> None:
    run = _validate(tmp_path, {"cohorts": {"mine": {"sample_sheet": "nowhere.csv"}}})
    assert run.returncode == 1
    assert "cohorts.mine.sample_sheet: nowhere.csv does not exist" in run.stderr
