"""An RNA-only cohort (no slide column at all) through the real Snakemake DAG: RNA -> splits ->
SNN and CoxNet -> evaluation -> report, with no slide job scheduled.

The cohort is real: 60 patients of GSE7390 (``duopath.demo.gse7390``: log2 microarray values,
probe IDs mapped through a user gene map), 3 folds, a few SNN epochs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from duopath.demo.gse7390 import write_gse7390

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"),
           "--directory", str(work), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture()
def rna_only_cohort(tmp_path: Path) -> Path:
    files = write_gse7390(tmp_path / "gse7390")
    sheet = pd.read_csv(files.sheet, dtype=str, keep_default_na=False)
    assert "slide_id" not in sheet.columns and "slide_path" not in sheet.columns
    sheet.iloc[:60].to_csv(tmp_path / "samples.csv", index=False)
    config = {
        "output_dir": "output",
        "cohorts": {"gse": {"sample_sheet": "samples.csv", "rna": str(files.expression),
                            "tasks": ["survival"]}},
        "rna": files.rna_settings(),
        "training": {"folds": 3},
        "teacher": {"dim": 8, "n_heads": 2, "gene_hidden": 16, "time_bins": 3,
                    "optim": {"epochs": 3, "batch_size": 8, "eval_batch_size": 16}},
        "baselines": {"models": ["abmil", "snn"], "dim": 8, "gene_hidden": 16},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def test_rna_only_cohort_runs_without_slide_jobs(rna_only_cohort: Path) -> None:
    work = rna_only_cohort
    dry = snakemake(work, "-n", "--quiet", "rules")
    assert dry.returncode == 0, dry.stderr[-3000:]
    for rule in ("segment", "tile", "embed", "wsi_summary", "teacher", "student", "heatmaps"):
        assert f" {rule} " not in f" {dry.stdout} ", f"{rule} scheduled for an RNA-only cohort"

    run = snakemake(work, "--cores", "2")
    assert run.returncode == 0, run.stderr[-5000:]
    out = work / "output"
    assert not (out / "features").exists() and not (out / "qc" / "gse" / "wsi_summary.csv").exists()
    for model in ("snn", "coxnet"):
        for k in range(3):
            fold = out / "results" / "gse" / "survival" / model / f"fold{k}"
            metrics = json.loads((fold / "metrics.json").read_text())
            assert metrics["model"] == model and metrics["excluded"] == {}
            assert sum(metrics["n_patients"].values()) == 60
            pred = pd.read_parquet(fold / "predictions.parquet")
            assert len(pred) == metrics["n_patients"]["test"]
            assert {"risk", "surv_0"} <= set(pred.columns)
    assert (out / "results" / "gse" / "survival" / "coxnet" / "fold0" / "coxnet.json").exists()
    summary = pd.read_csv(out / "results" / "gse" / "summary.csv")
    assert set(summary["model"]) == {"snn", "coxnet"}
    c = summary[(summary["metric"] == "c_harrell")].set_index("model")["mean"]
    assert c.notna().all()
    assert not (out / "results" / "gse" / "survival" / "abmil").exists()
    html = (out / "results" / "gse" / "report.html").read_text()
    assert "coxnet" in html and "abmil" in html  # abmil listed as skipped, with the reason
    assert "no patient of the cohort has slides" in html
