"""An external test cohort (`external_of`) through Snakemake: the source's slide-only model of every
fold, and their ensemble, scored on the external cohort's slides; nothing trained on it.

Feature stores, sheets and the source's split table are written by the fixture (as in
test_training_rule.py), so the DAG runs the training, external and external-report rules only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_mixed_cohort import snakemake
from test_training_data import D, grid, write_store

pytestmark = pytest.mark.slow
FOLDS = 2
SOURCE = [f"S{i:02d}" for i in range(12)]
EXTERNAL = [f"E{i:02d}" for i in range(8)]


@pytest.fixture()
def cohorts(tmp_path: Path) -> Path:
    rng = np.random.default_rng(2)
    out = tmp_path / "output"
    config = {"output_dir": "output", "cohorts": {}, "training": {"folds": FOLDS},
              "teacher": {"time_bins": 2, "feature_cache_gb": 0.1,
                          "optim": {"epochs": 2, "batch_size": 4, "eval_batch_size": 8}},
              "baselines": {"models": ["abmil"], "dim": 8, "n_layers": 1}}
    for name, patients in (("src", SOURCE), ("ext", EXTERNAL)):
        z = rng.normal(size=len(patients))
        (tmp_path / name).mkdir()
        sheet = pd.DataFrame({
            "patient_id": patients, "slide_id": [f"{p}-1" for p in patients],
            "slide_path": [str(tmp_path / name / f"{p}-1.svs") for p in patients],
            "rna_sample_id": "", "site": "", "label": "",
            "time": np.round(np.exp(-z) * 10 + 1, 2),
            "event": [0 if i % 4 == 3 else 1 for i in range(len(patients))],
        })
        for p in sheet["slide_path"]:
            Path(p).write_bytes(b"")
        sheet.to_csv(tmp_path / f"{name}.csv", index=False)
        feats = out / "features" / name / "efficientnet_lite0"
        feats.mkdir(parents=True)
        for i, sid in enumerate(sheet["slide_id"]):
            write_store(feats / f"{sid}.zarr", grid(2, 2), rng.normal(size=(4, D)) + z[i],
                        rng.normal(size=(16, D)))
        (out / "cohorts" / name).mkdir(parents=True)
        sheet.to_csv(out / "cohorts" / name / "samples.csv", index=False)
        config["cohorts"][name] = {"sample_sheet": f"{name}.csv"}
    config["cohorts"]["ext"]["external_of"] = "src"
    rows = []
    for k in range(FOLDS):
        test = [p for i, p in enumerate(SOURCE) if i % FOLDS == k]
        rest = [p for p in SOURCE if p not in test]
        rows += [(k, p, "test") for p in test] + [(k, p, "val") for p in rest[:2]]
        rows += [(k, p, "train") for p in rest[2:]]
    (out / "splits").mkdir()
    pd.DataFrame(rows, columns=["fold", "patient_id", "role"]).assign(site="", stratum="").to_csv(
        out / "splits" / "src.csv", index=False)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def test_external_cohort_scores_every_fold_model_and_the_ensemble(cohorts: Path) -> None:
    rules = ("baseline", "external", "external_report")
    dry = snakemake(cohorts, "-n", "output/results/ext/report.html", rules=rules)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "results/ext/survival/abmil" not in dry.stdout  # nothing trained on the external cohort
    run = snakemake(cohorts, "--cores", "2", "output/results/ext/report.html", rules=rules)
    assert run.returncode == 0, run.stderr[-5000:]
    ext = cohorts / "output" / "results" / "ext"
    metrics = json.loads((ext / "external" / "survival" / "abmil" / "metrics.json").read_text())
    assert metrics["members"] == [f"fold{k}" for k in range(FOLDS)]
    assert set(metrics["scores"]) == {"fold0", "fold1", "ensemble"}
    assert metrics["n_patients"] == len(EXTERNAL) and metrics["excluded"] == {}
    for member in ("fold0", "fold1"):
        assert {"c_harrell", "c_uno", "ibs"} <= set(metrics["scores"][member])
    pred = pd.read_parquet(ext / "external" / "survival" / "abmil" / "predictions.parquet")
    assert len(pred) == 3 * len(EXTERNAL) and set(pred["patient_id"]) == set(EXTERNAL)
    ens = pred[pred["member"] == "ensemble"].set_index("patient_id")["risk"]
    folds = pred[pred["member"] != "ensemble"].groupby("patient_id")["risk"].mean()
    np.testing.assert_allclose(ens.loc[folds.index], folds)
    table = pd.read_csv(ext / "external.csv")
    assert set(table["member"]) == {"fold0", "fold1", "ensemble"}
    html = (ext / "report.html").read_text()
    assert "External validation" in html and "abmil" in html and "ensemble" in html
