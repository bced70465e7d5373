"""A mixed cohort through Snakemake: some patients have a slide and RNA, some a slide only, some
RNA only. One split table over all patients; each model keeps the patients it can use (teacher:
both; the students and abmil: slide -- the students take the task loss only from training
patients without RNA, student_kdonly leaves them out of training; snn and coxnet: RNA), says why
it left the others out, and the SNN job does not wait for any slide's features.

Feature stores, the RNA AnnData and the split table are written by the fixture (as in
test_training_rule.py), so the DAG runs the model rules and the evaluation only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_training_data import D, grid, rna_adata, write_store

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

BOTH = [f"P{i:02d}" for i in range(12)]
SLIDE_ONLY = [f"P{i:02d}" for i in range(12, 18)]
RNA_ONLY = [f"P{i:02d}" for i in range(18, 24)]
PATIENTS = BOTH + SLIDE_ONLY + RNA_ONLY
FOLDS = 2
RULES = ("teacher", "student", "baseline", "coxnet", "evaluate")


def snakemake(work: Path, *args: str, rules: tuple[str, ...] = RULES) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"),
           "--directory", str(work), "--allowed-rules", *rules, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def split_table() -> pd.DataFrame:
    """Every group spread over every role of every fold (so each model has train/val/test)."""
    rows = []
    for k in range(FOLDS):
        for group in (BOTH, SLIDE_ONLY, RNA_ONLY):
            test = [p for i, p in enumerate(group) if i % FOLDS == k]
            rest = [p for p in group if p not in test]
            n_val = 2 if group is BOTH else 1
            rows += [(k, p, "test") for p in test] + [(k, p, "val") for p in rest[:n_val]]
            rows += [(k, p, "train") for p in rest[n_val:]]
    return pd.DataFrame(rows, columns=["fold", "patient_id", "role"]).assign(site="", stratum="")


@pytest.fixture()
def mixed(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    z = rng.normal(size=len(PATIENTS))
    has_slide = [p in BOTH or p in SLIDE_ONLY for p in PATIENTS]
    has_rna = [p in BOTH or p in RNA_ONLY for p in PATIENTS]
    (tmp_path / "slides").mkdir()
    sheet = pd.DataFrame({
        "patient_id": PATIENTS,
        "slide_id": [f"{p}-1" if s else "" for p, s in zip(PATIENTS, has_slide, strict=True)],
        "slide_path": [f"{p}-1.svs" if s else "" for p, s in zip(PATIENTS, has_slide, strict=True)],
        "rna_sample_id": [f"{p}-R" if r else "" for p, r in zip(PATIENTS, has_rna, strict=True)],
        "site": "",
        "time": np.round(np.exp(-z) * 10 + 1, 2),
        "event": [0 if i % 4 == 3 else 1 for i in range(len(PATIENTS))],
    })
    for p in sheet["slide_path"]:
        if p:
            (tmp_path / "slides" / p).write_bytes(b"")
    sheet.to_csv(tmp_path / "samples.csv", index=False)
    (tmp_path / "rna_matrix.tsv").write_text("gene\n")  # the RNA stage is not run: see module doc
    config = {
        "output_dir": "output",
        "cohorts": {"mixed": {"sample_sheet": "samples.csv", "slide_dir": "slides",
                              "rna": "rna_matrix.tsv"}},
        "training": {"folds": FOLDS},
        "teacher": {"dim": 8, "n_heads": 2, "n_gene_tokens": 2, "gene_hidden": 8, "attention": "cross",
                    "ablations": [], "time_bins": 2, "feature_cache_gb": 0.1,
                    "optim": {"epochs": 2, "batch_size": 4, "eval_batch_size": 8}},
        "student": {"dim": 8, "n_heads": 2, "feature_cache_gb": 0.1, "ablations": ["kdonly"],
                    "optim": {"epochs": 2, "batch_size": 4, "eval_batch_size": 8}},
        "baselines": {"models": ["abmil", "snn"], "dim": 8, "n_layers": 1, "gene_hidden": 8},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "output"
    feats = out / "features" / "mixed" / "efficientnet_lite0"
    feats.mkdir(parents=True)
    for i, p in enumerate(PATIENTS):
        if has_slide[i]:
            write_store(feats / f"{p}-1.zarr", grid(2, 2), rng.normal(size=(4, D)) + z[i],
                        rng.normal(size=(16, D)))
    (out / "cohorts" / "mixed").mkdir(parents=True)
    canonical = sheet.assign(slide_path=[str(tmp_path / "slides" / p) if p else ""
                                         for p in sheet["slide_path"]])
    canonical.to_csv(out / "cohorts" / "mixed" / "samples.csv", index=False)
    (out / "rna").mkdir()
    with_rna = [p for p, r in zip(PATIENTS, has_rna, strict=True) if r]
    zr = z[[PATIENTS.index(p) for p in with_rna]]
    genes = np.concatenate([zr[:, None] + rng.normal(size=(len(with_rna), 4)) * 0.3,
                            rng.normal(size=(len(with_rna), 3))], 1)
    rna_adata(with_rna, genes, 4, without=SLIDE_ONLY).write_h5ad(out / "rna" / "mixed.h5ad")
    (out / "splits").mkdir()
    split_table().to_csv(out / "splits" / "mixed.csv", index=False)
    return tmp_path


def fold_metrics(work: Path, model: str, fold: int) -> dict:
    path = work / "output" / "results" / "mixed" / "survival" / model / f"fold{fold}" / "metrics.json"
    return json.loads(path.read_text())


def test_snn_does_not_wait_for_slide_features(mixed: Path) -> None:
    """Without one slide's store (and no rule to make it) abmil cannot start, the SNN can."""
    store = mixed / "output" / "features" / "mixed" / "efficientnet_lite0" / f"{SLIDE_ONLY[0]}-1.zarr"
    store.rename(store.with_name("moved_away"))
    target = "output/results/mixed/survival/{}/fold0/metrics.json"
    snn = snakemake(mixed, "-n", target.format("snn"), rules=("baseline",))
    assert snn.returncode == 0, snn.stderr[-3000:]
    abmil = snakemake(mixed, "-n", target.format("abmil"), rules=("baseline",))
    assert abmil.returncode != 0 and f"{SLIDE_ONLY[0]}-1.zarr" in abmil.stdout + abmil.stderr


def test_each_model_uses_the_patients_it_can(mixed: Path) -> None:
    dry = snakemake(mixed, "-n", "output/results/mixed/metrics.csv")
    assert dry.returncode == 0, dry.stderr[-3000:]
    run = snakemake(mixed, "--cores", "2", "output/results/mixed/metrics.csv")
    assert run.returncode == 0, run.stderr[-5000:]

    expected = {  # model -> (patients it keeps, reason per left-out group)
        "teacher": (BOTH, {"no slide": RNA_ONLY, "no RNA": SLIDE_ONLY}),
        "student": (BOTH + SLIDE_ONLY, {"no slide": RNA_ONLY}),
        "student_nokd": (BOTH + SLIDE_ONLY, {"no slide": RNA_ONLY}),
        "abmil": (BOTH + SLIDE_ONLY, {"no slide": RNA_ONLY}),
        "snn": (BOTH + RNA_ONLY, {"no RNA": SLIDE_ONLY}),
        "coxnet": (BOTH + RNA_ONLY, {"no RNA": SLIDE_ONLY}),
    }
    splits = split_table()
    for model, (kept, why) in expected.items():
        for k in range(FOLDS):
            m = fold_metrics(mixed, model, k)
            fold = splits[splits["fold"] == k]
            for role in ("train", "val", "test"):
                want = set(fold.loc[fold["role"] == role, "patient_id"]) & set(kept)
                assert m["n_patients"][role] == len(want), (model, k, role)
            for reason, group in why.items():
                for p in group:
                    assert m["excluded"][p].startswith(reason), (model, p, m["excluded"][p])
            pred = pd.read_parquet(mixed / "output" / "results" / "mixed" / "survival" / model /
                                   f"fold{k}" / "predictions.parquet")
            assert set(pred["patient_id"]) <= set(kept)
    for k in range(FOLDS):  # the ablation: slide-only patients out of training, not out of the test
        fold = splits[splits["fold"] == k]
        m, full = fold_metrics(mixed, "student_kdonly", k), fold_metrics(mixed, "student", k)
        train_slide_only = set(fold.loc[fold["role"] == "train", "patient_id"]) & set(SLIDE_ONLY)
        assert m["n_patients"]["train"] == full["n_patients"]["train"] - len(train_slide_only)
        assert full["n_train_without_rna"] == len(train_slide_only) and m["n_train_without_rna"] == 0
        assert m["n_patients"]["test"] == full["n_patients"]["test"]
        assert all(m["excluded"][p].startswith("no RNA, in training") for p in train_slide_only)
    metrics = pd.read_csv(mixed / "output" / "results" / "mixed" / "metrics.csv")
    assert set(metrics["model"]) == set(expected) | {"student_kdonly"}
