"""`training.threads` and `encoder.num_workers` set how jobs run and are not result settings.

Why: on a 2-core machine the demo's small models use about one core each, so two jobs with
one thread each finish the training phase in about half the time of jobs reserving two threads
(the demo's jobs ran one after another: bench/results/demo_run.json). A thread count does not
change results, so it must not enter any rule's settings (a change would re-run the splits and
everything after them). The same holds for the embed jobs' `encoder.num_workers` (the demo
reads tiles in the job itself: one 17-slide batch 38.9 s with 2 workers -> 19.9 s, and two
1-thread jobs share the 2 cores): a change must not re-embed a cohort.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # one `snakemake -n -p` of the demo DAG (~15 s)

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"


def _dry_run(tmp_path: Path, threads: int) -> str:
    cfg = tmp_path / f"threads{threads}.yaml"
    cfg.write_text(f"training:\n  folds: 5\n  val_fraction: 0.2\n  seed: 1337\n  threads: {threads}\n"
                   f"encoder:\n  num_workers: {threads}\n  slides_per_job: 17\n"
                   f"output_dir: {tmp_path / 'out'}\n")  # never the checkout's own output/
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}
    proc = subprocess.run(
        [str(VENV_BIN / "snakemake"), "-n", "-p", "--cores", "8", "--configfile", "config.yaml", str(cfg)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def test_training_threads_reach_the_jobs_and_not_the_settings(tmp_path: Path) -> None:
    out = _dry_run(tmp_path, 3)
    commands = [line for line in out.splitlines() if "python -m duopath" in line]
    train = [c for c in commands if " train " in c or " train-student " in c or " heatmaps " in c]
    assert train, "no training or heatmap commands in the dry run"
    assert all("--threads 3" in c for c in train), train[:2]
    splits = [c for c in commands if " splits " in c]
    assert splits and not any(re.search(r'"threads"', c) for c in splits), splits
    jobs = re.findall(r"^\s+threads: (\d+)", out, flags=re.M)
    assert "3" in jobs


def test_embed_workers_reach_the_jobs_and_not_the_settings(tmp_path: Path) -> None:
    out = _dry_run(tmp_path, 3)
    embed = [line for line in out.splitlines() if "python -m duopath embed" in line]
    assert embed, "no embed commands in the dry run"
    assert all("--num-workers 3 --threads 3" in c for c in embed), embed[:1]
    assert not any('"num_workers"' in c or '"slides_per_job"' in c for c in embed), embed[:1]
