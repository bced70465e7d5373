"""rules/teacher.smk and rules/baselines.smk through Snakemake: targets (models × folds), wildcard
constraints, the shell command, one real job on a tiny synthetic cohort, a slide-only baseline on
a cohort without RNA, and a bad ablation failing at parse time."""

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

from duopath.layout import FOLD_FILES

REPO = Path(__file__).resolve().parents[1]
PATIENTS = [f"P{i}" for i in range(12)]


def env_with_train_command() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def run_snakemake(work: Path, *args: str, env: dict[str, str],
                  rules: tuple[str, ...] = ("teacher",)) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"),
           "--directory", str(work),
           "--allowed-rules", *rules, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    (tmp_path / "slides").mkdir()
    z = rng.normal(size=len(PATIENTS))
    sheet = pd.DataFrame({
        "patient_id": PATIENTS, "slide_id": [f"{p}-1" for p in PATIENTS],
        "slide_path": [f"{p}-1.svs" for p in PATIENTS], "rna_sample_id": [f"{p}-R" for p in PATIENTS],
        "site": [f"S{i % 3}" for i in range(len(PATIENTS))],
        "label": np.where(z > 0, "high", "low"),
        "time": np.round(np.exp(-z) * 10 + 1, 2), "event": [1, 1, 0] * 4, "mpp": "",
    })
    for p in sheet["slide_path"]:
        (tmp_path / "slides" / p).write_bytes(b"")
    sheet.to_csv(tmp_path / "samples.csv", index=False)
    config = {
        "output_dir": "output",
        "cohorts": {"synth": {"sample_sheet": "samples.csv", "slide_dir": "slides"}},
        "training": {"folds": 3},
        "teacher": {"dim": 8, "n_heads": 2, "n_gene_tokens": 2, "gene_hidden": 8, "attention": "cross",
                    "ablations": ["rna_mean"], "feature_cache_gb": 0.1,
                    "optim": {"epochs": 2, "batch_size": 4, "eval_batch_size": 8}},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "output"
    feats = out / "features" / "synth" / "efficientnet_lite0"
    feats.mkdir(parents=True)
    for i, sid in enumerate(sheet["slide_id"]):
        t10 = grid(2, 2)
        write_store(feats / f"{sid}.zarr", t10, rng.normal(size=(4, D)) + z[i], rng.normal(size=(16, D)))
    (out / "cohorts" / "synth").mkdir(parents=True)
    canonical = sheet.assign(slide_path=[str(tmp_path / "slides" / p) for p in sheet["slide_path"]])
    canonical.to_csv(out / "cohorts" / "synth" / "samples.csv", index=False)
    (out / "rna").mkdir()
    genes = np.concatenate([z[:, None] + rng.normal(size=(12, 4)) * 0.2, rng.normal(size=(12, 3))], 1)
    rna_adata(PATIENTS, genes, 4).write_h5ad(out / "rna" / "synth.h5ad")
    (out / "splits").mkdir()
    rows = []
    for k in range(3):
        test = PATIENTS[4 * k: 4 * k + 4]
        rest = [p for p in PATIENTS if p not in test]
        rows += [(k, p, "test") for p in test] + [(k, p, "val") for p in rest[:2]]
        rows += [(k, p, "train") for p in rest[2:]]
    pd.DataFrame(rows, columns=["fold", "patient_id", "role"]).assign(site="", stratum="").to_csv(
        out / "splits" / "synth.csv", index=False)
    return tmp_path


TARGETS = [f"output/results/synth/survival/{m}/fold{k}/metrics.json" for m in ("teacher", "teacher_rna_mean")
           for k in range(3)]


def test_teacher_rule_targets_and_one_real_job(workdir: Path) -> None:
    """One job per (cohort, task, model) trains all its folds (--fold k --out-dir fold{k} each)."""
    env = env_with_train_command()
    dry = run_snakemake(workdir, "-n", "-p", *TARGETS, env=env)
    assert dry.returncode == 0, dry.stderr[-3000:]
    text = dry.stdout + dry.stderr
    assert text.count("rule teacher:") == 2  # teacher, teacher_rna_mean: each all 3 folds
    assert "--model teacher_rna_mean" in text and "--task survival" in text
    for k in range(3):
        assert f"--fold {k} --out-dir output/results/synth/survival/teacher_rna_mean/fold{k}" in text
    assert "--features-dir output/features/synth/efficientnet_lite0" in text

    run = run_snakemake(workdir, "--cores", "1", TARGETS[3], env=env)  # teacher_rna_mean fold0 ...
    assert run.returncode == 0, run.stderr[-3000:]
    for k in range(3):  # ... comes with the model's other folds, each in its own folder
        res = workdir / f"output/results/synth/survival/teacher_rna_mean/fold{k}"
        for name in FOLD_FILES.values():
            assert (res / name).exists(), name
        metrics = json.loads((res / "metrics.json").read_text())
        assert metrics["model"] == "teacher_rna_mean" and metrics["fold"] == k
        assert metrics["n_patients"] == {"train": 6, "val": 2, "test": 4}
        assert len(pd.read_csv(res / "train_log.csv")) == 2
    assert (workdir / "output/logs/teacher/synth/survival/teacher_rna_mean.log").exists()
    again = run_snakemake(workdir, "-n", *TARGETS[3:], env=env)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_unknown_ablation_fails_at_parse_time(workdir: Path) -> None:
    cfg = yaml.safe_load((workdir / "config.yaml").read_text())
    cfg["teacher"]["ablations"] = ["40x"]
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    dry = run_snakemake(workdir, "-n", *TARGETS[:1], env=dict(os.environ))
    assert dry.returncode != 0
    text = dry.stdout + dry.stderr
    assert "teacher.ablations" in text and "unknown teacher ablation '40x'" in text


def test_slide_only_baseline_runs_on_a_cohort_without_rna(workdir: Path) -> None:
    """`synth` names no RNA: abmil/transmil are its baselines (no --rna), the RNA ones are not."""
    cfg = yaml.safe_load((workdir / "config.yaml").read_text())
    cfg["baselines"] = {"models": ["abmil", "snn"], "dim": 8, "n_layers": 1, "gene_hidden": 8}
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    (workdir / "output" / "rna" / "synth.h5ad").unlink()
    env = env_with_train_command()
    targets = [f"output/results/synth/survival/abmil/fold{k}/metrics.json" for k in range(3)]
    dry = run_snakemake(workdir, "-n", "-p", *targets, env=env, rules=("baseline",))
    text = dry.stdout + dry.stderr
    assert text.count("rule baseline:") == 1, text[-3000:]  # one job, its 3 folds
    assert "--model abmil" in text and "--rna" not in text
    assert "--baseline-settings" in text
    target = "output/results/synth/survival/abmil/fold1/metrics.json"
    run = run_snakemake(workdir, "--cores", "1", target, env=env, rules=("baseline",))
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((workdir / target).read_text())
    assert metrics["model"] == "abmil" and metrics["n_patients"]["test"] == 4
