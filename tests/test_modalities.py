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


def test_plan_schedules_by_modality(tmp_path) -> None:
    """The parse-time plan: no slide job for an RNA-only cohort, models by what some patient has,
    nothing trained on an external test cohort, which is scored with slide-only models only."""
    from duopath.config import parse_config
    from duopath.workflow import Plan

    (tmp_path / "s.svs").write_bytes(b"x")
    pd.DataFrame({"patient_id": ["P1", "P2"], "rna_sample_id": ["a", "b"], "time": [1, 2],
                  "event": [1, 0]}).to_csv(tmp_path / "rna_only.csv", index=False)
    pd.DataFrame({"patient_id": ["E1"], "slide_path": ["s.svs"], "time": [1], "event": [1]}).to_csv(
        tmp_path / "ext.csv", index=False)
    (tmp_path / "rna.tsv").write_text("gene\ta\tb\n")
    cfg = parse_config({"output_dir": str(tmp_path / "out"), "cohorts": {
        "rna_only": {"sample_sheet": str(tmp_path / "rna_only.csv"), "rna": str(tmp_path / "rna.tsv")},
        "ext": {"sample_sheet": str(tmp_path / "ext.csv"), "external_of": "rna_only"}}})
    plan = Plan(cfg)
    assert not plan.has_slides("rna_only") and plan.slides("rna_only") == []
    run, skipped = plan.allowed_models("rna_only", ["teacher", "abmil", "snn", "student"])
    assert run == ["snn"] and skipped["teacher"] == "no patient of the cohort has slides and RNA"
    assert plan.coxnet_models("rna_only") == (["coxnet"], {})
    assert plan.has_slides("ext") and plan.external_source("ext") == "rna_only"
    assert plan.allowed_models("ext", ["abmil"]) == ([], {"abmil": "external test cohort of rna_only: "
                                                               "not trained on"})
    assert plan.external_models("ext", ["student", "snn", "abmil", "teacher"]) == ["student", "abmil"]
    assert plan.external_models("rna_only", ["abmil"]) == []


def test_external_of_must_name_a_trained_cohort(tmp_path) -> None:
    from duopath.config import ConfigError, parse_config

    pd.DataFrame({"patient_id": ["E1"], "slide_path": ["s.svs"]}).to_csv(tmp_path / "e.csv", index=False)
    sheet = str(tmp_path / "e.csv")
    with pytest.raises(ConfigError, match="external_of: no cohort 'tcga'"):
        parse_config({"cohorts": {"e": {"sample_sheet": sheet, "external_of": "tcga"}}})
    with pytest.raises(ConfigError, match="is itself an external test cohort"):
        parse_config({"cohorts": {"a": {"sample_sheet": sheet},
                                  "b": {"sample_sheet": sheet, "external_of": "a"},
                                  "c": {"sample_sheet": sheet, "external_of": "b"}}})
