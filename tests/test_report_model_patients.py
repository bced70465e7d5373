"""The report's patients-per-model table: denominators, reasons, and which comparisons are paired."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from duopath.evaluation.collect import FoldRun
from duopath.report.model_patients import model_patients_table


def run(model: str, fold: int, test: list[str], excluded: dict[str, str]) -> FoldRun:
    return FoldRun("survival", model, fold, Path("."), pd.DataFrame({"patient_id": test}),
                   {"excluded": excluded})


def test_table_counts_reasons_and_pairing() -> None:
    runs = {"survival": {
        "teacher": [run("teacher", 0, ["A", "B"], {"C": "no RNA (teacher.missing_rna: exclude)",
                                                    "D": "no slide"}),
                    run("teacher", 1, ["E"], {"C": "no RNA (teacher.missing_rna: exclude)",
                                              "D": "no slide"})],
        "student": [run("student", 0, ["A", "B"], {}), run("student", 1, ["E"], {})],
        "snn": [run("snn", 0, ["A", "B", "D"], {"C": "no RNA"}), run("snn", 1, ["E"], {"C": "no RNA"})],
    }}
    html = model_patients_table(SimpleNamespace(runs=runs, reference="teacher"), "survival")
    assert "<td class=l>teacher</td><td class=l>3</td>" in html
    assert "no RNA (teacher.missing_rna: exclude): 1; no slide: 1" in html
    assert "paired: the same test patients" in html  # the student
    assert "<b>not paired</b>: 3 of its 4 test patients are teacher" in html  # the SNN
    assert "1 model(s) read other modalities" in html
