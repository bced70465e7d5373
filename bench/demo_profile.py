"""Where the demo DAG's time goes: one representative job per rule, times its job count.

Running the whole demo on 2 shared cores takes tens of minutes, so this measures single jobs
and multiplies: the job counts come from ``snakemake -n --quiet rules`` on the current config;
each representative job is the exact shell command Snakemake would run (``snakemake -n -p``),
run once here with its wall time and its CPU time (user + sys of the process tree). A training
job's log timestamps split it into start-up (interpreter + imports + reading features and
RNA), the epochs, and evaluation + writing. Import costs are measured in fresh interpreters.

Prerequisite: the jobs' inputs exist under ``output/`` (the demo, the sheet, masks/tiles/
features of the slides the representative jobs need, RNA, splits and, for the student, the
teacher's fold-0 checkpoint). The training jobs' *time* does not depend on feature values, so
for profiling the current demo the other slides' feature stores may be copies of one real
store of the same size (``--note`` records that); their metrics are then meaningless and are
not reported.

Usage: ``.venv/bin/python bench/demo_profile.py --out bench/results/demo_profile.json [--note ...]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("bench")

VENV_BIN = Path(sys.executable).parent
SNAKEMAKE = str(VENV_BIN / "snakemake")
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
#: What each representative job is: rule -> target (fold 0, survival, the first slide).
TARGETS = {
    "segment": "output/masks/demo/{slide}.png",
    "tile": "output/tiles/demo/{slide}.parquet",
    "embed": "output/features/demo/efficientnet_lite0/{slide}.zarr",
    "teacher": "output/results/demo/survival/teacher/fold0/metrics.json",
    "baseline": "output/results/demo/survival/abmil/fold0/metrics.json",
    "student": "output/results/demo/survival/student/fold0/metrics.json",
    "heatmaps": "output/results/demo/survival/teacher/fold0/heatmaps",
}
#: Modules a job imports before it does any work (measured in a fresh interpreter each).
IMPORTS = {
    "python -c pass": "pass",
    "duopath.cli (duopath --help)": "import duopath.cli",
    "torch": "import torch",
    "training job imports": "import duopath.training.predict_fold, anndata, zarr",
    "embed job imports": "import duopath.encoding.extract, duopath.encoding.registry",
    "segment/tile job imports": "import duopath.slides.stages",
}


def job_counts() -> dict[str, int]:
    """Rule -> number of jobs a fresh ``snakemake --cores all`` would run."""
    out = subprocess.run([SNAKEMAKE, "-n", "--quiet", "rules", "--forceall"], capture_output=True,
                         text=True, check=True).stdout
    counts: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            counts[parts[0]] = int(parts[1])
    return counts


def shell_command(target: str) -> str:
    """The exact shell command of the job that produces ``target`` (forced, dry run)."""
    out = subprocess.run([SNAKEMAKE, "-n", "-p", "--forcerun", target, "--", target],
                         capture_output=True, text=True, check=True).stdout
    cmds = [ln.removeprefix("Shell command: ") for ln in out.splitlines()
            if ln.startswith("Shell command: ")]
    if not cmds:
        raise RuntimeError(f"no shell command for {target}; are its inputs there?\n{out[-2000:]}")
    return cmds[-1]


def timed(cmd: str) -> tuple[float, float, float]:
    """Run ``cmd`` in bash; (start epoch s, wall s, CPU s of the process tree)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start_epoch, t0 = time.time(), time.perf_counter()
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    subprocess.run(["bash", "-c", cmd], check=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return start_epoch, wall, cpu


def log_path(cmd: str) -> Path | None:
    words = shlex.split(cmd)
    return Path(words[words.index(">") + 1]) if ">" in words else None


def _stamps(path: Path) -> list[tuple[float, str]]:
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        m = LOG_TIME.match(line)
        if m:
            t = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            rows.append((t, line[m.end():]))
    return rows


def training_phases(path: Path, start: float, wall: float) -> dict[str, float]:
    """Split a training job by its log: start-up, epochs, evaluation + writing (seconds)."""
    stamps = _stamps(path)
    epochs = [t for t, msg in stamps if re.search(r"\bepoch \d+:", msg)]
    if not epochs:
        return {}
    first_epoch_start = next(t for t, msg in stamps if "on cpu" in msg or "on cuda" in msg)
    return {
        "startup_imports_and_data_s": round(first_epoch_start - start, 2),
        "epochs_s": round(epochs[-1] - first_epoch_start, 2),
        "n_epochs": len(epochs),
        "eval_and_write_s": round(start + wall - epochs[-1], 2),
    }


def embed_compute(path: Path) -> dict[str, float]:
    """The embed job's own tile-loop time, from its log ("N tiles -> ... in X s")."""
    for _, msg in _stamps(path):
        m = re.search(r": (\d+) tiles -> .* in ([\d.]+) s", msg)
        if m:
            return {"n_tiles": int(m.group(1)), "extract_s": float(m.group(2))}
    return {}


def import_costs() -> dict[str, dict[str, float]]:
    """Fresh-interpreter import cost per job kind: best of two, wall and CPU seconds."""
    costs = {}
    for name, stmt in IMPORTS.items():
        runs = [timed(f"{shlex.quote(sys.executable)} -c {shlex.quote(stmt)}") for _ in range(2)]
        costs[name] = {"wall_s": round(min(r[1] for r in runs), 2),
                       "cpu_s": round(min(r[2] for r in runs), 2)}
    return costs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("bench/results/demo_profile.json"))
    ap.add_argument("--slide", default=None, help="slide of the WSI jobs (default: the sheet's first)")
    ap.add_argument("--rules", default=",".join(TARGETS), help="which representative jobs to run")
    ap.add_argument("--note", default="", help="free text stored with the result (e.g. fake features)")
    ap.add_argument("--merge", action="store_true", help="update the jobs of an existing --out file")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import pandas as pd

    slide = args.slide or pd.read_csv("output/cohorts/demo/samples.csv")["slide_id"].iloc[0]
    counts = job_counts()
    previous = json.loads(args.out.read_text()) if args.merge and args.out.is_file() else {}
    jobs = previous.get("jobs", {})
    for rule in args.rules.split(","):
        target = TARGETS[rule].format(slide=slide)
        cmd = shell_command(target)
        path = log_path(cmd)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)  # Snakemake makes it before a job
        start, wall, cpu = timed(cmd)
        row = {"target": target, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
               "n_jobs": counts.get(rule, 0)}
        if path is not None and path.is_file():
            row.update(training_phases(path, start, wall) if "train" in cmd else embed_compute(path))
        jobs[rule] = row
        log.info("%-9s %6.1f s wall %6.1f s CPU  x %d jobs", rule, wall, cpu, row["n_jobs"])

    result = {
        "job_counts": counts,
        "jobs": jobs,
        "projected_serial_s": {r: round(j["wall_s"] * j["n_jobs"], 1) for r, j in jobs.items()},
        "projected_cpu_s": {r: round(j["cpu_s"] * j["n_jobs"], 1) for r, j in jobs.items()},
        "imports": import_costs(),
        "load_average_at_end": os.getloadavg(),
        "cpus": os.cpu_count(),
        "note": args.note or previous.get("note", ""),
        "date": dt.date.today().isoformat(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
