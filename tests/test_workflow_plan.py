"""The workflow's plan (models, tasks, folds per cohort), its input functions, the rule files'
shape, a user's --configfile, and the config's JSON schema -- without running a job."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml
from pydantic import ValidationError

from duopath import layout
from duopath.config import ConfigError, DuopathConfig, load_config
from duopath.config_schema import schema_json
from duopath.workflow import STUDENT_MODELS, Plan
from duopath.workflow_inputs import RuleInputs

REPO = Path(__file__).resolve().parents[1]


def user_cohort(tmp: Path, *, rna: bool) -> dict:
    (tmp / "slides").mkdir(exist_ok=True)
    (tmp / "slides" / "a b ü.svs").write_bytes(b"")
    (tmp / "slides" / "c.svs").write_bytes(b"")
    pd.DataFrame({"patient_id": ["P1", "P2"], "slide_id": ["s1", "s2"],
                  "slide_path": ["a b ü.svs", "c.svs"], "time": [3.0, 5.0], "event": [1, 0]}
                 ).to_csv(tmp / "samples.csv", index=False)
    cohort = {"sample_sheet": str(tmp / "samples.csv"), "slide_dir": str(tmp / "slides")}
    if rna:
        (tmp / "counts.tsv").write_text("gene\tP1\tP2\nA\t1\t2\n")
        cohort["rna"] = str(tmp / "counts.tsv")
    return cohort


def plan_of(raw: dict) -> Plan:
    return Plan(DuopathConfig.model_validate(raw))


def test_models_tasks_and_folds_of_a_cohort(tmp_path: Path) -> None:
    plan = plan_of({"cohorts": {"with": user_cohort(tmp_path, rna=True) | {"tasks": ["survival"]}},
                    "training": {"folds": 3}, "teacher": {"ablations": ["no_cgc"]},
                    "baselines": {"models": ["abmil", "snn"]}})
    assert plan.report_models("with") == ["teacher", "teacher_no_cgc", "student", "student_nokd",
                                          "abmil", "snn", "coxnet"]
    assert plan.heatmap_models("with") == ["teacher", "student"]
    assert plan.skipped_models("with") == {}
    assert plan.folds == ["0", "1", "2"] and plan.tasks("with") == ["survival"]
    metrics = [t for t in plan.targets("with") if t.endswith("metrics.json")]
    assert len(metrics) == 7 * 3 and "output/results/with/survival/snn/fold2/metrics.json" in metrics
    assert "output/results/with/report.html" in plan.targets("with")
    assert "output/qc/with/wsi_summary.csv" in plan.targets("with")


def test_student_ablation_is_one_config_switch_away(tmp_path: Path) -> None:
    """student.ablations [kdonly] adds student_kdonly after the two students (jobs, report);
    it duplicates the student under slide_only_patients: exclude, which the config refuses."""
    raw = {"cohorts": {"with": user_cohort(tmp_path, rna=True) | {"tasks": ["survival"]}},
           "teacher": {"ablations": []}, "baselines": {"models": []}, "student": {"ablations": ["kdonly"]}}
    plan = plan_of(raw)
    assert plan.students("with") == ["student", "student_nokd", "student_kdonly"]
    assert "output/results/with/survival/student_kdonly/fold0/metrics.json" in plan.targets("with")
    with pytest.raises(ValidationError, match="kdonly"):
        plan_of(raw | {"student": {"ablations": ["kdonly"], "slide_only_patients": "exclude"}})


def test_coxnet_runs_the_survival_task_only(tmp_path: Path) -> None:
    """CoxNet is a Cox model: no classification fold is asked for (no rule could make it)."""
    cohort = user_cohort(tmp_path, rna=True) | {"tasks": ["survival", "classification"],
                                                "label_column": "grade"}
    sheet = pd.read_csv(tmp_path / "samples.csv").assign(grade=["low", "high"])
    sheet.to_csv(tmp_path / "samples.csv", index=False)
    plan = plan_of({"cohorts": {"c": cohort}, "training": {"folds": 2}, "baselines": {"models": []}})
    assert "coxnet" in plan.report_models("c")
    coxnet = [t for t in plan.targets("c") if "/coxnet/" in t]
    assert coxnet == [f"output/results/c/survival/coxnet/fold{k}/metrics.json" for k in (0, 1)]
    off = plan_of({"cohorts": {"c": cohort}, "baselines": {"models": [], "coxnet": False}})
    assert "coxnet" not in off.report_models("c") and "coxnet" not in off.skipped_models("c")


def test_a_cohort_without_rna_reports_its_slide_baselines_and_says_why(tmp_path: Path) -> None:
    plan = plan_of({"cohorts": {"slides_only": user_cohort(tmp_path, rna=False)},
                    "baselines": {"models": ["abmil", "snn"]}})
    assert plan.report_models("slides_only") == ["abmil"]
    skipped = plan.skipped_models("slides_only")
    assert skipped["snn"] == "the cohort has no RNA" and skipped["teacher"] == "the cohort has no RNA"
    assert set(STUDENT_MODELS) <= set(skipped) and plan.heatmap_dirs("slides_only") == []


def test_a_bad_ablation_fails_when_the_plan_is_made(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"teacher\.ablations"):
        plan_of({"cohorts": {"c": user_cohort(tmp_path, rna=True)}, "teacher": {"ablations": ["40x"]}})


def test_input_functions_quote_paths_with_spaces(tmp_path: Path) -> None:
    inputs = RuleInputs(plan_of({"cohorts": {"c": user_cohort(tmp_path, rna=True)},
                                 "output_dir": str(tmp_path / "out put")}))
    wc = SimpleNamespace(cohort="c", slide="s1", model="teacher")
    assert inputs.slide_file(wc).endswith("slides/a b ü.svs")
    args = RuleInputs.summary_args(wc, SimpleNamespace(meta=["m 1.json"], tiles=["t 1.parquet"],
                                                       features=["f ü.zarr"]))
    assert args == "--mask-meta 'm 1.json' --tiles 't 1.parquet' --features 'f ü.zarr'"
    assert RuleInputs.rna_arg(wc, SimpleNamespace(rna=["r ü.h5ad"])) == "--rna 'r ü.h5ad'"
    assert RuleInputs.rna_arg(wc, SimpleNamespace(rna=[])) == ""
    assert inputs.teacher_rna(wc) == [f"{tmp_path}/out put/rna/c.h5ad"]
    assert inputs.teacher_rna(SimpleNamespace(cohort="c", model="student")) == []
    assert "--skipped" not in inputs.skipped_args(wc)
    summary = RuleInputs.wsi_summary_arg
    assert summary(wc, SimpleNamespace(wsi_summary=["w ü.csv"])) == "--wsi-summary 'w ü.csv'"
    assert summary(wc, SimpleNamespace(wsi_summary=[])) == ""
    checkpoints = SimpleNamespace(checkpoints=["a b/c.st"])
    assert RuleInputs.checkpoint_args(wc, checkpoints) == "--checkpoint 'a b/c.st'"
    assert RuleInputs.metrics_args(wc, SimpleNamespace(metrics=["m 1.json"])) == "--metrics 'm 1.json'"


def test_each_model_waits_only_for_the_inputs_it_reads(tmp_path: Path) -> None:
    """The SNN needs no feature store (an RNA-only cohort has none; a mixed one must not make it
    wait for slides), a slide-only baseline no RNA file; an RNA-only cohort's report no WSI summary."""
    inputs = RuleInputs(plan_of({"cohorts": {"c": user_cohort(tmp_path, rna=True)}}))
    snn, abmil = (SimpleNamespace(cohort="c", model=m) for m in ("snn", "abmil"))
    assert inputs.model_features(snn) == [] and inputs.model_rna(snn) == ["output/rna/c.h5ad"]
    assert len(inputs.model_features(abmil)) == 2 and inputs.model_rna(abmil) == []
    assert inputs.wsi_summary(snn) == ["output/qc/c/wsi_summary.csv"]
    pd.DataFrame({"patient_id": ["P1", "P2"], "rna_sample_id": ["P1", "P2"], "time": [3.0, 5.0],
                  "event": [1, 0]}).to_csv(
        tmp_path / "rna_only.csv", index=False)
    rna_only = {"sample_sheet": str(tmp_path / "rna_only.csv"), "rna": str(tmp_path / "counts.tsv")}
    plan = plan_of({"cohorts": {"r": rna_only}})
    wc = SimpleNamespace(cohort="r", model="snn")
    assert RuleInputs(plan).wsi_summary(wc) == [] and RuleInputs(plan).model_features(wc) == []
    targets = plan.targets("r")
    assert not [t for t in targets if "/qc/" in t] and "output/splits/r.csv" in targets


def test_an_external_cohort_is_scored_not_trained(tmp_path: Path) -> None:
    src = user_cohort(tmp_path, rna=False) | {"tasks": ["survival"]}
    plan = plan_of({"cohorts": {"src": src, "ext": src | {"external_of": "src"}}, "training": {"folds": 2},
                    "baselines": {"models": ["abmil"]}})
    assert plan.report_models("ext") == [] and plan.external_trained_models("ext") == ["abmil"]
    targets = plan.targets("ext")
    assert "output/results/ext/report.html" in targets and "output/qc/ext/wsi_summary.csv" in targets
    assert not [t for t in targets if "splits" in t or t.endswith("metrics.json")]
    inputs = RuleInputs(plan)
    wc = SimpleNamespace(cohort="ext", task="survival", model="abmil")
    assert inputs.external_checkpoints(wc) == [
        f"output/results/src/survival/abmil/fold{k}/checkpoint.safetensors" for k in (0, 1)]
    assert inputs.external_source_file(layout.SPLITS)(wc) == "output/splits/src.csv"
    assert inputs.external_metrics(wc) == ["output/results/ext/external/survival/abmil/metrics.json"]


def test_rule_files_only_declare_rules() -> None:
    """No helper functions or model lists in rules/*.smk (they live in duopath.workflow*), so a
    rule file never needs another one's globals and the include order does not matter."""
    for smk in sorted((REPO / "rules").glob("*.smk")):
        text = smk.read_text()
        assert not re.search(r"^def \w+", text, flags=re.M), f"{smk.name} defines a function"
        assert not re.search(r"^[A-Z_]+\s*=", text, flags=re.M), f"{smk.name} defines a global"


def dry_run(work: Path, *args: str) -> str:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"),
           "-n", "--quiet", "rules", *args]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=work)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout + run.stderr


def test_a_user_configfile_runs_exactly_its_cohorts(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.yaml").write_text((REPO / "config.yaml").read_text())  # the shipped demo config
    cohort = user_cohort(work, rna=False)
    (work / "my.yaml").write_text(yaml.safe_dump({"cohorts": {"mine": cohort}, "baselines": {"models": []}}))
    mine = dry_run(work, "--configfile", "my.yaml")
    assert "demo_demo" not in mine and "segment" in mine, mine[-2000:]
    assert "teacher" not in mine  # package defaults: no RNA, no baselines -> nothing to train
    demo = dry_run(work)  # no --configfile: the shipped config.yaml, i.e. the demo
    assert "demo_demo" in demo


def test_config_schema_is_current_and_checks_the_shipped_config() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    committed = (REPO / "config.schema.json").read_text()
    assert committed == schema_json(), "run `duopath config schema --out config.schema.json`"
    schema = json.loads(committed)
    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    jsonschema.validate(raw, schema)
    load_config(REPO / "config.yaml")  # and pydantic agrees
    raw["tiling"]["tile_pixels"] = 256
    with pytest.raises(jsonschema.ValidationError, match="tile_pixels"):
        jsonschema.validate(raw, schema)
    assert "# yaml-language-server: $schema=config.schema.json" in (REPO / "config.yaml").read_text()


def test_config_schema_command(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from duopath.cli import app

    printed = CliRunner().invoke(app, ["config", "schema"])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.stdout)["title"] == "duopath config.yaml"
    written = CliRunner().invoke(app, ["config", "schema", "--out", str(tmp_path / "s.json")])
    assert written.exit_code == 0 and (tmp_path / "s.json").read_text() == schema_json()
