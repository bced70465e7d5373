"""Re-running a part touches only that part: one slide, one stage, one cohort, new slides only.

Why: a real cohort is hundreds of slides and hours of GPU time. Adding ten slides, fixing one
corrupt slide or changing the encoder must redo exactly what depends on the change, never the
whole cohort. Checked on a *completed* run of a tiny cohort (two copies of the CMU slide, WSI
half of the DAG) with dry-runs, whose scheduled jobs (rule + wildcards) are parsed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # one real run of the WSI half on two small slides (~20-40 s)

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
VENV_BIN = REPO / ".venv" / "bin"
CMU = REPO / "src" / "duopath" / "data" / "slides" / "CMU-1-Small-Region.svs"
HEADER = "patient_id,slide_id,slide_path,time,event,site\n"
FEATURES = "out/features/{cohort}/efficientnet_lite0/{slide}.zarr"


def _row(i: int, slide: str) -> str:
    return f"P{i},{slide},{slide}.svs,{10 * (i + 1)},{i % 2},site{i}\n"


def _config(cohorts: dict[str, str]) -> str:
    lines = ["output_dir: out", "cohorts:"]
    for name, sheet in cohorts.items():
        lines += [f"  {name}:", f"    sample_sheet: {sheet}", "    slide_dir: slides"]
    lines += ["encoder:", "  device: cpu", "  num_workers: 0", "  batch_size: 16", ""]
    return "\n".join(lines)


def _snakemake(root: Path, *args: str, timeout: float = 300) -> str:
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}
    proc = subprocess.run([str(VENV_BIN / "snakemake"), "-s", str(SNAKEFILE), "--directory",
                           str(root), *args], cwd=root, env=env, capture_output=True, text=True,
                          timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"snakemake {' '.join(args)} failed:\n{out[-6000:]}"
    return out


def scheduled(output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job a dry-run would run."""
    jobs = []
    for m in re.finditer(r"^(?:local)?rule (\w+):\n((?:    .*\n)+)", output, flags=re.M):
        wc = re.search(r"^    wildcards: (.*)$", m.group(2), flags=re.M)
        wildcards = dict(kv.split("=", 1) for kv in wc.group(1).split(", ")) if wc else {}
        jobs.append((m.group(1), wildcards))
    return jobs


def per_rule(jobs: list[tuple[str, dict[str, str]]]) -> Counter:
    return Counter(rule for rule, _ in jobs)


def slides_of(jobs: list[tuple[str, dict[str, str]]]) -> set[tuple[str, str]]:
    return {(wc["cohort"], wc["slide"]) for _, wc in jobs if "slide" in wc}


def dry(root: Path, *args: str) -> list[tuple[str, dict[str, str]]]:
    return scheduled(_snakemake(root, "-n", *args))


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A completed run of the WSI half for cohort `tiny` (slides s1, s2)."""
    root = tmp_path_factory.mktemp("rerun")
    (root / "slides").mkdir()
    for s in ("s1", "s2", "s3"):
        shutil.copy(CMU, root / "slides" / f"{s}.svs")
    (root / "tiny.csv").write_text(HEADER + _row(0, "s1") + _row(1, "s2"))
    (root / "config.yaml").write_text(_config({"tiny": "tiny.csv"}))
    _snakemake(root, "--cores", "2", "out/qc/tiny/wsi_summary.csv", timeout=600)
    assert "Nothing to be done" in _snakemake(root, "-n", "out/qc/tiny/wsi_summary.csv")
    return root


TARGET = "out/qc/tiny/wsi_summary.csv"


def test_parser_reads_dry_run_jobs() -> None:
    text = ("rule embed:\n    input: a\n    wildcards: cohort=c, encoder=e, slide=s9\n    resources: x\n"
            "\nlocalrule wsi_summary:\n    input: b\n    wildcards: cohort=c\n")
    assert scheduled(text) == [("embed", {"cohort": "c", "encoder": "e", "slide": "s9"}),
                               ("wsi_summary", {"cohort": "c"})]


def test_one_slide_reruns_alone(done: Path) -> None:
    """Forcing one slide's segmentation redoes that slide's chain and the cohort summary only."""
    jobs = dry(done, "--forcerun", "out/masks/tiny/s1.png", "--", TARGET)
    assert per_rule(jobs) == {"segment": 1, "tile": 1, "embed": 1, "wsi_summary": 1}, jobs
    assert slides_of(jobs) == {("tiny", "s1")}


def test_one_slide_features_alone(done: Path) -> None:
    target = FEATURES.format(cohort="tiny", slide="s2")
    jobs = dry(done, "--forcerun", target, "--", target)
    assert [(r, wc["slide"]) for r, wc in jobs] == [("embed", "s2")], jobs


def test_a_replaced_slide_is_redone_alone(done: Path) -> None:
    """A slide file replaced (re-scanned, fixed) is newer than its outputs: its chain reruns."""
    slide = done / "slides/s2.svs"
    stat = slide.stat()
    os.utime(slide, ns=(stat.st_atime_ns, time.time_ns()))
    try:
        jobs = dry(done, TARGET)
        assert per_rule(jobs) == {"segment": 1, "tile": 1, "embed": 1, "wsi_summary": 1}, jobs
        assert slides_of(jobs) == {("tiny", "s2")}
    finally:
        os.utime(slide, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert "Nothing to be done" in _snakemake(done, "-n", TARGET)


def test_encoder_change_reruns_embedding_only(done: Path) -> None:
    """A stage's settings are its params: changing them redoes that stage, not the ones before."""
    jobs = dry(done, "--config", 'encoder={"device": "cpu", "num_workers": 0, "batch_size": 16, '
               '"dtype": "float32"}', "--", TARGET)
    assert per_rule(jobs) == {"embed": 2, "wsi_summary": 1}, jobs


def test_added_slides_only_are_processed(done: Path) -> None:
    """Appending a slide to the sheet schedules that slide alone (plus the cohort summary)."""
    sheet = done / "tiny.csv"
    before = sheet.read_text()
    sheet.write_text(before + _row(2, "s3"))
    try:
        jobs = dry(done, TARGET)
        assert per_rule(jobs) == {"segment": 1, "tile": 1, "embed": 1, "wsi_summary": 1}, jobs
        assert slides_of(jobs) == {("tiny", "s3")}
    finally:
        sheet.write_text(before)


def test_one_cohort_alone(done: Path) -> None:
    """`--config only_cohorts=X` schedules nothing for the other cohorts, pending work or not."""
    (done / "other.csv").write_text(HEADER + _row(0, "s3"))
    (done / "tiny.csv").write_text(HEADER + _row(0, "s1") + _row(1, "s2") + _row(2, "s3"))
    config = done / "config.yaml"
    original = config.read_text()
    config.write_text(_config({"tiny": "tiny.csv", "other": "other.csv"}))
    try:
        both = dry(done)
        assert {c for c, _ in slides_of(both)} == {"tiny", "other"}
        jobs = dry(done, "--config", "only_cohorts=other")
        assert jobs, "cohort `other` has work to do"
        assert {wc.get("cohort") for _, wc in jobs if wc} == {"other"}, jobs
        assert slides_of(jobs) == {("other", "s3")}
    finally:
        config.write_text(original)
        (done / "tiny.csv").write_text(HEADER + _row(0, "s1") + _row(1, "s2"))
