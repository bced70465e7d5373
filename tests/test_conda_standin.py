"""`snakemake --sdm conda` runs each stage with its env's own interpreter on the workflow's source.

Conda channels cannot be reached here, so `conda` is the stand-in of tests/conda_standin.py:
Snakemake's real conda code path (create the env from envs/X.yaml, activate it in the job's
shell, run the rule) with each env built as a plain venv holding only the env file's packages
and their requirements, and NO duopath. A real `rna` job (and its `sample_sheet` job) runs on a
tiny cohort; its log must show the env's interpreter and duopath loaded from the workflow's src/.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conda_standin import install

from duopath.config import DemoConfig
from duopath.demo.rna import gene_truth, simulate_counts
from duopath.demo.truth import plan_demo, simulate_patients

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def tiny_rna_cohort(work: Path) -> None:
    """A user cohort (sheet, empty slide files, RNA counts) and a config naming only it."""
    cfg = DemoConfig(n_patients=10, n_genes=300, seed=5)
    sheet = plan_demo(cfg)
    (work / "slides").mkdir()
    for p in sheet["slide_path"]:
        (work / p).write_bytes(b"")  # never opened: only the rna and sample_sheet jobs run
    sheet.to_csv(work / "samples.csv", index=False)
    counts = simulate_counts(cfg, simulate_patients(cfg), gene_truth(cfg))
    counts.to_csv(work / "counts.tsv", sep="\t", index=False)
    config = {"output_dir": "output",
              "cohorts": {"standin": {"sample_sheet": "samples.csv", "slide_dir": ".",
                                      "rna": "counts.tsv"}}}
    (work / "config.yaml").write_text(yaml.safe_dump(config))


def test_rule_job_runs_with_the_activated_envs_python(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    tiny_rna_cohort(work)
    condabin = install(tmp_path / "conda")
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    # the stand-in conda first; the project venv (which has duopath installed) off PATH, and no
    # PYTHONPATH of ours: the Snakefile alone must make the workflow's src/ importable in the job
    env["PATH"] = os.pathsep.join([str(condabin)] + [p for p in env.get("PATH", "").split(os.pathsep)
                                                      if p != venv_bin])
    env.pop("PYTHONPATH", None)
    prefix = tmp_path / "envs"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"),
           "--directory", str(work), "--cores", "1", "--sdm", "conda", "--conda-prefix", str(prefix),
           "output/rna/standin.h5ad"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]

    envs = sorted(p for p in prefix.iterdir() if p.is_dir())
    rna_env = [p for p in envs if (p.parent / f"{p.name}.yaml").read_text() ==
               (REPO / "envs" / "rna.yaml").read_text()]
    assert len(rna_env) == 1, f"no stand-in env built from envs/rna.yaml among {envs}"
    python = rna_env[0] / "bin" / "python"
    # the env really lacks duopath: only the workflow's src/ on PYTHONPATH provides it
    bare = subprocess.run([str(python), "-c", "import duopath"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"})
    assert bare.returncode != 0 and "No module named 'duopath'" in bare.stderr

    log = (work / "output" / "logs" / "rna" / "standin" / "rna.log").read_text()
    m = re.search(r"INFO duopath: python (\S+); duopath \S+ from (\S+)", log)
    assert m, log[-2000:]
    assert m.group(1) == str(python), f"job ran {m.group(1)}, not the env's {python}"
    assert Path(m.group(2)) == REPO / "src" / "duopath"
    assert (work / "output" / "rna" / "standin.h5ad").exists()
    assert (work / "output" / "benchmarks" / "standin" / "rna" / "rna.tsv").exists()
