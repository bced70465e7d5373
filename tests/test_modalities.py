"""duopath.modalities: what each model reads, which patients can feed it, and why the others cannot."""

from __future__ import annotations

import pandas as pd
import pytest

from duopath.modalities import model_inputs, model_usage, patient_modalities

SHEET = pd.DataFrame({  # P1 both (two slides), P2 slide only, P3 RNA only
    "patient_id": ["P1", "P1", "P2", "P3"],
    "slide_id": ["s1", "s2", "s3", ""],
    "rna_sample_id": ["P1-R", "", "", "P3-R"],
})


def test_model_inputs() -> None:
    assert model_inputs("teacher") == {"slide", "rna"}
    assert model_inputs("teacher_no_cgc") == {"slide", "rna"}
    assert model_inputs("teacher", missing_rna="mean") == {"slide"}
    assert model_inputs("student_nokd") == {"slide"}
    assert model_inputs("abmil") == {"slide"} and model_inputs("mcat") == {"slide", "rna"}
    assert model_inputs("snn") == {"rna"} and model_inputs("coxnet") == {"rna"}
    with pytest.raises(ValueError, match="unknown model"):
        model_inputs("resnet")


def test_patient_modalities_follow_the_rna_join() -> None:
    mods = patient_modalities(SHEET)
    assert mods.to_dict("index") == {"P1": {"slide": True, "rna": True},
                                     "P2": {"slide": True, "rna": False},
                                     "P3": {"slide": False, "rna": True}}
    # no rna_sample_id anywhere: samples are matched by patient ID, so every patient may have RNA
    by_patient = patient_modalities(SHEET.assign(rna_sample_id=""))
    assert by_patient["rna"].all()
    assert not patient_modalities(SHEET, has_rna_source=False)["rna"].any()


def test_model_usage_counts_reasons_and_pairing() -> None:
    usage = model_usage(SHEET, ["teacher", "student", "abmil", "snn"]).set_index("model")
    assert usage.loc["teacher", "n_used"] == 1
    assert usage.loc["teacher", "left_out"] == "no RNA: 1; no slide: 1"
    assert usage.loc["abmil", "n_used"] == 2 and usage.loc["abmil", "left_out"] == "no slide: 1"
    assert usage.loc["snn", "left_out"] == "no RNA: 1"
    assert usage["paired_with_main"].to_dict() == {"teacher": True, "student": False, "abmil": False,
                                                   "snn": False}
