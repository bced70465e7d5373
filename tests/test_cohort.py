"""Sample sheets: canonical columns, TCGA barcodes, and errors that name file, line and column."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from duopath.cohort import SHEET_COLUMNS, SampleSheetError, parse_tcga_barcode, read_sample_sheet
from duopath.config import CohortConfig


def _write(tmp_path: Path, rows: list[dict], sep: str = ",") -> Path:
    path = tmp_path / ("samples.tsv" if sep == "\t" else "samples.csv")
    pd.DataFrame(rows).to_csv(path, sep=sep, index=False)
    return path


@pytest.fixture
def slides(tmp_path: Path) -> Path:
    d = tmp_path / "slides"
    d.mkdir()
    for name in ("TCGA-A2-A0CM-01Z-00-DX1.svs", "TCGA-BH-A0BV-01Z-00-DX1.svs", "b.svs", "c.svs",
                 "d.svs"):
        (d / name).write_bytes(b"x")
    return d


def test_tcga_barcode() -> None:
    bc = parse_tcga_barcode("TCGA-A2-A0CM-01Z-00-DX1.ABC")
    assert bc is not None
    assert (bc.patient_id, bc.site, bc.sample_type) == ("TCGA-A2-A0CM", "A2", "01")
    assert parse_tcga_barcode("slide_17") is None


def test_canonical_columns_and_barcode_derivation(tmp_path: Path, slides: Path) -> None:
    sheet = _write(tmp_path, [
        {"slide_path": "TCGA-A2-A0CM-01Z-00-DX1.svs", "OS.time": "12.5", "OS": "1"},
        {"slide_path": "TCGA-BH-A0BV-01Z-00-DX1.svs", "OS.time": "30", "OS": "alive"},
    ], sep="\t")
    cohort = CohortConfig(sample_sheet=sheet, slide_dir=slides, time_column="OS.time",
                          event_column="OS")
    df = read_sample_sheet(cohort)
    assert list(df.columns) == SHEET_COLUMNS
    assert df["patient_id"].tolist() == ["TCGA-A2-A0CM", "TCGA-BH-A0BV"]
    assert df["site"].tolist() == ["A2", "BH"]
    assert df["event"].tolist() == [1, 0]
    assert df["slide_id"].tolist() == ["TCGA-A2-A0CM-01Z-00-DX1", "TCGA-BH-A0BV-01Z-00-DX1"]
    assert Path(df["slide_path"].iloc[0]).is_absolute()


def test_errors_name_line_and_column(tmp_path: Path, slides: Path) -> None:
    sheet = _write(tmp_path, [
        {"patient_id": "p1", "slide_id": "b", "slide_path": "b.svs", "time": "5", "event": "1"},
        {"patient_id": "p2", "slide_id": "c", "slide_path": "missing.svs", "time": "5", "event": "1"},
        {"patient_id": "p3", "slide_id": "d", "slide_path": "d.svs", "time": "-1", "event": "maybe"},
        {"patient_id": "p4", "slide_id": "e", "slide_path": "", "time": "1", "event": "0"},
    ])
    cohort = CohortConfig(sample_sheet=sheet, slide_dir=slides)
    with pytest.raises(SampleSheetError) as info:
        read_sample_sheet(cohort)
    msg = str(info.value)
    assert "line 3, column slide_path" in msg and "missing.svs does not exist" in msg
    assert "line 4, column time" in msg
    assert "line 4, column event" in msg
    assert "line 5, column slide_path: empty for slide 'e'" in msg
    assert "line 2" not in msg


def test_duplicate_slide_ids(tmp_path: Path, slides: Path) -> None:
    sheet = _write(tmp_path, [
        {"patient_id": "p1", "slide_id": "b", "slide_path": "b.svs", "time": "5", "event": "1"},
        {"patient_id": "p2", "slide_id": "b", "slide_path": "b.svs", "time": "5", "event": "0"},
    ])
    with pytest.raises(SampleSheetError, match=r"slide_id b is listed 2 times: line 2 .*, line 3"):
        read_sample_sheet(CohortConfig(sample_sheet=sheet, slide_dir=slides))


def test_classification_needs_labels(tmp_path: Path, slides: Path) -> None:
    sheet = _write(tmp_path, [
        {"patient_id": "p1", "slide_id": "b", "slide_path": "b.svs", "grade": "high"},
        {"patient_id": "p2", "slide_id": "c", "slide_path": "c.svs", "grade": ""},
    ])
    cohort = CohortConfig(sample_sheet=sheet, slide_dir=slides, tasks=["classification"],
                          label_column="grade")
    with pytest.raises(SampleSheetError, match="line 3, column grade: missing label"):
        read_sample_sheet(cohort)


def test_mpp_override_is_checked(tmp_path: Path, slides: Path) -> None:
    sheet = _write(tmp_path, [
        {"patient_id": "p1", "slide_id": "b", "slide_path": "b.svs", "time": "5", "event": "1",
         "mpp": "0.25"},
        {"patient_id": "p2", "slide_id": "c", "slide_path": "c.svs", "time": "5", "event": "1",
         "mpp": "abc"},
    ])
    with pytest.raises(SampleSheetError, match="line 3, column mpp"):
        read_sample_sheet(CohortConfig(sample_sheet=sheet, slide_dir=slides))


def test_rna_only_sheet_and_mixed_rows(tmp_path: Path, slides: Path) -> None:
    """No slide column at all (an RNA-only cohort), and rows with a slide, RNA or both."""
    rna_only = _write(tmp_path, [
        {"patient_id": "p1", "rna_sample_id": "p1-R", "time": "5", "event": "1"},
        {"patient_id": "p2", "rna_sample_id": "p2-R", "time": "7", "event": "0"},
    ])
    df = read_sample_sheet(CohortConfig(sample_sheet=rna_only))
    assert df["slide_id"].tolist() == ["", ""] and df["slide_path"].tolist() == ["", ""]
    assert df["rna_sample_id"].tolist() == ["p1-R", "p2-R"]

    mixed = _write(tmp_path, [
        {"patient_id": "p1", "slide_id": "b", "slide_path": "b.svs", "rna_sample_id": "p1-R",
         "time": "5", "event": "1"},
        {"patient_id": "p2", "slide_id": "", "slide_path": "", "rna_sample_id": "p2-R",
         "time": "5", "event": "1"},
        {"patient_id": "p3", "slide_id": "d", "slide_path": "d.svs", "rna_sample_id": "",
         "time": "5", "event": "0"},
    ])
    df = read_sample_sheet(CohortConfig(sample_sheet=mixed, slide_dir=slides))
    assert df["slide_id"].tolist() == ["b", "", "d"]
    assert df["slide_path"].iloc[1] == "" and Path(df["slide_path"].iloc[2]).is_absolute()


def test_row_without_slide_or_rna_is_an_error(tmp_path: Path, slides: Path) -> None:
    sheet = _write(tmp_path, [
        {"patient_id": "p1", "slide_id": "b", "slide_path": "b.svs", "rna_sample_id": "", "time": "5",
         "event": "1"},
        {"patient_id": "p2", "slide_id": "", "slide_path": "", "rna_sample_id": "", "time": "5",
         "event": "1"},
    ])
    with pytest.raises(SampleSheetError, match="line 3: the row has neither a slide"):
        read_sample_sheet(CohortConfig(sample_sheet=sheet, slide_dir=slides))
    no_columns = _write(tmp_path, [{"patient_id": "p1", "time": "5", "event": "1"}])
    with pytest.raises(SampleSheetError, match="an `rna_sample_id` column"):
        read_sample_sheet(CohortConfig(sample_sheet=no_columns))
