"""Where a finished DAG run's time went, from Snakemake's own ``benchmark:`` files.

Reads ``<output>/benchmarks/<cohort>/<stage>/*.tsv`` (one per job) and prints, per stage, the
job count, the summed job wall time and CPU time, and the run's elapsed wall time when given
(``--elapsed-s``, e.g. from ``time snakemake --cores all``). The ratio of summed job wall time to
elapsed time says how much the scheduler ran in parallel: ~1 on 2 cores means the jobs ran one
after another (each rule reserving both cores), ~2 means both cores were busy.

Usage: ``python bench/demo_run_summary.py output/benchmarks/demo --elapsed-s 913
    --out bench/results/demo_run.json``
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import logging
import os
from pathlib import Path

log = logging.getLogger("demo_run_summary")


def summarise(bench_dir: Path) -> dict[str, dict[str, float]]:
    """``{stage: {jobs, wall_s, cpu_s}}`` over every job's benchmark TSV under ``bench_dir``."""
    stages: dict[str, dict[str, float]] = {}
    for tsv in sorted(bench_dir.rglob("*.tsv")):
        stage = tsv.relative_to(bench_dir).parts[0]
        with tsv.open() as fh:
            row = next(csv.DictReader(fh, delimiter="\t"))
        s = stages.setdefault(stage, {"jobs": 0, "wall_s": 0.0, "cpu_s": 0.0})
        s["jobs"] += 1
        s["wall_s"] += float(row["s"])
        s["cpu_s"] += float(row.get("cpu_time") or 0.0)
    return dict(sorted(stages.items(), key=lambda kv: -kv[1]["wall_s"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench_dir", type=Path)
    ap.add_argument("--elapsed-s", type=float, default=None)
    ap.add_argument("--note", default="")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    stages = summarise(args.bench_dir)
    total_wall = sum(s["wall_s"] for s in stages.values())
    result = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "note": args.note,
        "elapsed_s": args.elapsed_s,
        "jobs": int(sum(s["jobs"] for s in stages.values())),
        "sum_job_wall_s": round(total_wall, 1),
        "sum_job_cpu_s": round(sum(s["cpu_s"] for s in stages.values()), 1),
        "parallelism": round(total_wall / args.elapsed_s, 2) if args.elapsed_s else None,
        "stages": {k: {m: round(v, 1) for m, v in s.items()} for k, s in stages.items()},
    }
    for k, s in stages.items():
        log.info("%-18s jobs %4d  wall %7.1f s  cpu %7.1f s", k, s["jobs"], s["wall_s"], s["cpu_s"])
    log.info("jobs %d, summed job wall %.0f s, elapsed %s s, parallelism %s", result["jobs"],
             total_wall, args.elapsed_s, result["parallelism"])
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
