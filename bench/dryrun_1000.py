"""How long ``snakemake -n`` takes to build the DAG of a 1,000-slide cohort (target: seconds).

    .venv/bin/python bench/dryrun_1000.py                 # writes bench/results/dryrun_1000.json
    .venv/bin/python bench/dryrun_1000.py --slides 200 --repeats 1 --out /tmp/x.json

Why this is worth measuring: everything a rule's input function or the Snakefile does at parse
time is paid on *every* invocation (`-n`, a one-slide re-run, every SLURM status round of a
remote job's own Snakemake), once per slide. A slide opened while the DAG is built (to read its
mpp, its size...) turns seconds into many minutes on a network file system.

What it does, in a temporary working directory:

1. writes a cohort of N sample-sheet rows whose slides are **empty placeholder files** (nothing
   can read them: an OpenSlide/tifffile/PIL open fails on an empty file, and a Python-level
   ``open()`` of any of them is recorded by an audit hook in the timed Snakemake process);
2. times ``snakemake -n`` (the default target: the whole DAG) ``--repeats`` times, a fresh
   process each (what a user waits for, interpreter start-up included), and the WSI-only target;
3. marks the WSI half of the cohort complete (creates every output ``--summary`` lists, then
   ``snakemake --touch`` to order their mtimes), appends 10 slides to the sheet and times the
   dry-run again: it must schedule segment/tile/embed for exactly the 10 new slides.

The figures go to ``bench/results/dryrun_1000.json`` with the ratio to the 10 s target.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

log = logging.getLogger("bench.dryrun_1000")

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
VENV_BIN = Path(sys.executable).parent
TARGET_S = 10.0
PER_SLIDE_RULES = ("segment", "tile", "embed")

# Runs Snakemake in this process after installing an audit hook that records every Python-level
# open() of a path under the slide folder (argv[1]) into argv[2]; argv[3:] are Snakemake's args.
AUDITED_SNAKEMAKE = r"""
import sys
slides, record = sys.argv[1], sys.argv[2]
opened = []
def hook(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes)):
        path = args[0] if isinstance(args[0], str) else args[0].decode(errors="replace")
        if path.startswith(slides):
            opened.append(path)
sys.addaudithook(hook)
open(slides + "/.sentinel", "rb").close()  # proves the hook records opens (bench checks it)
from snakemake.cli import main
sys.argv = ["snakemake", *sys.argv[3:]]
try:
    main()
finally:
    with open(record, "w") as fh:
        fh.write("\n".join(opened))
"""


def write_cohort(root: Path, n: int, start: int = 0) -> list[str]:
    """Append ``n`` slides (empty placeholder files) to ``root``'s sample sheet; return their ids."""
    slides = root / "slides"
    slides.mkdir(parents=True, exist_ok=True)
    (slides / ".sentinel").touch()
    sheet = root / "samples.csv"
    new = not sheet.exists()
    ids = []
    with sheet.open("a") as fh:
        if new:
            fh.write("patient_id,slide_id,slide_path,time,event,site\n")
        for i in range(start, start + n):
            slide_id = f"S{i:05d}"
            (slides / f"{slide_id}.svs").touch()
            fh.write(f"P{i // 2:05d},{slide_id},{slide_id}.svs,{30 + i % 97},{i % 2},site{i % 7}\n")
            ids.append(slide_id)
    return ids


def write_config(root: Path) -> None:
    (root / "rna_counts.tsv").touch()  # placeholder: parse time only checks that it exists
    (root / "config.yaml").write_text(
        "output_dir: out\n"
        "cohorts:\n"
        "  big:\n"
        "    sample_sheet: samples.csv\n"
        "    slide_dir: slides\n"
        "    rna: rna_counts.tsv\n"
        "encoder:\n  device: cpu\n"
    )


def snakemake(root: Path, args: list[str], *, timeout: float = 600) -> tuple[float, str, list[str]]:
    """Run Snakemake (audited) in ``root``; return wall seconds, output and slides opened."""
    record = root / ".opened_slides.txt"
    cmd = [sys.executable, "-c", AUDITED_SNAKEMAKE, str(root / "slides"), str(record),
           "-s", str(SNAKEFILE), "--directory", str(root), *args]
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{out[-5000:]}")
    opened = [p for p in record.read_text().splitlines() if p] if record.exists() else []
    sentinel = str(root / "slides" / ".sentinel")
    if sentinel not in opened:
        raise RuntimeError("the audit hook did not record the sentinel open: the check is blind")
    return wall, out, [p for p in opened if p != sentinel]


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry-run: rule -> number of jobs."""
    counts: dict[str, int] = {}
    m = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\ntotal\s+\d+", output, flags=re.S)
    if m is None:
        return counts
    for line in m.group(1).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def complete_wsi_half(root: Path, target: str) -> int:
    """Create every output of ``target``'s DAG (empty; ``.zarr`` as folders), then --touch."""
    _, out, _ = snakemake(root, ["--summary", target])
    made = 0
    for line in out.splitlines():
        fields = line.split("\t")
        if len(fields) < 5 or fields[0] == "output_file" or not fields[0].startswith("out/"):
            continue
        path = root / fields[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".zarr":
            path.mkdir(exist_ok=True)
        else:
            path.touch()
        made += 1
    snakemake(root, ["--touch", "--cores", "1", target])
    return made


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slides", type=int, default=1000)
    ap.add_argument("--added", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "dryrun_1000.json")
    ap.add_argument("--keep", action="store_true", help="keep the temporary working directory")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)

    root = Path(tempfile.mkdtemp(prefix="duopath-dryrun-"))
    try:
        write_cohort(root, args.slides)
        write_config(root)
        wsi_target = "out/qc/big/wsi_summary.csv"

        full, opened_all = [], set()
        counts: dict[str, int] = {}
        for i in range(args.repeats):
            wall, out, opened = snakemake(root, ["-n"])
            full.append(wall)
            opened_all.update(opened)
            counts = job_counts(out)
            log.info("snakemake -n (whole DAG), run %d: %.2f s, %d jobs", i + 1, wall,
                     sum(counts.values()))
        wsi_wall, _, opened = snakemake(root, ["-n", wsi_target])
        opened_all.update(opened)
        log.info("snakemake -n %s: %.2f s", wsi_target, wsi_wall)

        made = complete_wsi_half(root, wsi_target)
        done_wall, done_out, opened = snakemake(root, ["-n", wsi_target])
        opened_all.update(opened)
        nothing = "Nothing to be done" in done_out
        log.info("completed cohort (%d outputs made): -n in %.2f s, nothing to do: %s",
                 made, done_wall, nothing)

        added = write_cohort(root, args.added, start=args.slides)
        add_wall, add_out, opened = snakemake(root, ["-n", wsi_target])
        opened_all.update(opened)
        add_counts = job_counts(add_out)
        scheduled = set(re.findall(r"wildcards: cohort=big, (?:encoder=[^,]+, )?slide=(\S+)", add_out))
        only_new = (all(add_counts.get(r) == args.added for r in PER_SLIDE_RULES)
                    and scheduled == set(added))
        log.info("after adding %d slides: -n in %.2f s, jobs %s, only the new slides: %s",
                 args.added, add_wall, add_counts, only_new)

        median = statistics.median(full)
        result = {
            "benchmark": "snakemake -n over a fake cohort (sample sheet + empty placeholder slides)",
            "slides": args.slides,
            "dryrun_whole_dag_s": [round(x, 3) for x in full],
            "dryrun_whole_dag_median_s": round(median, 3),
            "jobs_in_whole_dag": counts,
            "dryrun_wsi_target_s": round(wsi_wall, 3),
            "target_s": TARGET_S,
            "ratio_to_target": round(median / TARGET_S, 3),
            "meets_target": median <= TARGET_S,
            "slides_opened_while_building_dag": sorted(opened_all),
            "completed_cohort_nothing_to_do": nothing,
            "completed_cohort_dryrun_s": round(done_wall, 3),
            "added_slides": args.added,
            "after_adding_dryrun_s": round(add_wall, 3),
            "after_adding_job_counts": add_counts,
            "after_adding_only_new_slides_scheduled": only_new,
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "snakemake": metadata.version("snakemake"),
                "platform": platform.platform(),
            },
            "note": "wall time of a fresh `snakemake -n` process (interpreter start-up included); "
                    "median of the repeats; CPU shared with other work while measured",
        }
        log.info("DAG build for %d slides: %.2f s median (%.2fx the %.0f s target); slides opened: %d",
                 args.slides, median, median / TARGET_S, TARGET_S, len(opened_all))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        log.info("wrote %s", args.out)
        if opened_all or not nothing or not only_new:
            log.error("FAILED: slides opened %s, nothing-to-do %s, only-new %s",
                      sorted(opened_all)[:5], nothing, only_new)
        return result
    finally:
        if args.keep:
            log.info("kept %s", root)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    res = main()
    sys.exit(0 if res["meets_target"] and not res["slides_opened_while_building_dag"]
             and res["after_adding_only_new_slides_scheduled"] else 1)
