"""rules/student.smk through Snakemake: targets (2 models × folds), the shell command, and one
real job that trains the student from the teacher checkpoint of the same fold."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_training_rule import workdir  # noqa: F401  (fixture: the tiny synthetic cohort)

from duopath.layout import FOLD_FILES

REPO = Path(__file__).resolve().parents[1]


def run_snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"),
           "--directory", str(work), "--allowed-rules", "teacher", "student", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


TARGETS = [f"output/results/synth/survival/{m}/fold{k}/metrics.json" for m in ("student", "student_nokd")
           for k in range(3)]


@pytest.mark.slow
def test_student_rule_targets_and_one_real_job(workdir: Path) -> None:  # noqa: F811
    dry = run_snakemake(workdir, "-n", "-p", *TARGETS)
    assert dry.returncode == 0, dry.stderr[-3000:]
    text = dry.stdout + dry.stderr
    assert text.count("rule student:") == 2 and text.count("rule teacher:") == 1  # a job per model
    assert ("--fold 2 --out-dir output/results/synth/survival/student/fold2 "
            "--teacher output/results/synth/survival/teacher/fold2/checkpoint.safetensors") in text
    assert "--model student_nokd" in text
    assert "--features-dir output/features/synth/efficientnet_lite0" in text

    run = run_snakemake(workdir, "--cores", "1", TARGETS[0])  # student, all folds (+ the teacher's)
    assert run.returncode == 0, run.stderr[-3000:]
    teacher = workdir / "output/results/synth/survival/teacher/fold0/checkpoint.safetensors"
    res = workdir / "output/results/synth/survival/student/fold0"
    for name in FOLD_FILES.values():
        assert (res / name).exists(), name
    metrics = json.loads((res / "metrics.json").read_text())
    assert metrics["model"] == "student" and metrics["n_patients"] == {"train": 6, "val": 2, "test": 4}
    assert metrics["teacher_sha256"] == hashlib.sha256(teacher.read_bytes()).hexdigest()
    assert (pd.read_csv(res / "train_log.csv")["train_kl_loss"] > 0).all()
    again = run_snakemake(workdir, "-n", TARGETS[0])
    assert "Nothing to be done" in again.stdout + again.stderr
