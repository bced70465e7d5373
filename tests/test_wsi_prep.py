"""Batched segmentation + tiling (``segmentation.slides_per_job``, rules/wsi_prep.smk) and batched
heatmaps: which slides share a job, the arguments of such a job, and through Snakemake one job per
batch whose outputs stay per slide, one slide still re-runnable alone."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from duopath import layout
from duopath.batches import PREP_OUTPUTS, slide_batches, wsi_prep_args
from duopath.config import parse_config
from duopath.workflow import Plan
from duopath.workflow_inputs import RuleInputs


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=4), unique=True, max_size=60), st.integers(1, 25))
def test_every_slide_is_in_exactly_one_batch_in_sheet_order(slides: list[str], per_job: int) -> None:
    batches = slide_batches(slides, per_job)
    assert [s for b in batches for s in b] == slides  # each once, in order
    assert all(1 <= len(b) <= per_job for b in batches)
    assert len(batches) == -(-len(slides) // per_job)
    assert all(len(b) == per_job for b in batches[:-1])  # only the last may be short
    # appending slides changes only the last, partial batch: the full ones keep their members
    more = slide_batches([*slides, "\x00new"], per_job)
    assert more[: len(batches) - 1] == batches[:-1] or not batches


def test_wsi_prep_args_quote_every_path_once_per_slide() -> None:
    files = {s: {n: f"out put/{n}/{s} ü" for n in PREP_OUTPUTS} for s in ("a", "b")}
    args = wsi_prep_args(["a", "b"], slide_path=lambda s: f"/sl ides/{s}.svs", outputs=files.__getitem__,
                         mpp=lambda s: None)
    assert args.startswith("'/sl ides/a.svs' '/sl ides/b.svs' --slide-id a --mask 'out put/mask/a ü' ")
    assert args.count("--tiles-qc ") == 2 and "--mpp" not in args
    mixed = wsi_prep_args(["a", "b"], slide_path=str, outputs=files.__getitem__,
                          mpp=lambda s: 0.25 if s == "a" else None)
    assert mixed.endswith("--mpp 0.25 --mpp auto")


def _plan(tmp_path: Path, per_job: int) -> Plan:
    (tmp_path / "slides").mkdir(exist_ok=True)
    names = ["s1", "s 2", "s3"]
    for n in names:
        (tmp_path / "slides" / f"{n}.svs").write_bytes(b"x")
    pd.DataFrame({"patient_id": ["P1", "P2", "P3"], "slide_id": ["s1", "s2", "s3"],
                  "slide_path": [f"{n}.svs" for n in names], "mpp": ["", "0.25", ""],
                  "time": [1.0, 2.0, 3.0], "event": [1, 0, 1]}).to_csv(tmp_path / "s.csv", index=False)
    raw = {"output_dir": str(tmp_path / "out ü"), "segmentation": {"slides_per_job": per_job},
           "cohorts": {"c": {"sample_sheet": str(tmp_path / "s.csv"), "slide_dir": str(tmp_path / "slides")}}}
    return Plan(parse_config(raw))


def test_plan_batches_and_the_batched_jobs_arguments(tmp_path: Path) -> None:
    plan = _plan(tmp_path, 2)
    assert plan.slide_batches("c", plan.cfg.segmentation.slides_per_job) == [["s1", "s2"], ["s3"]]
    files = plan.prep_files("c", "s2")
    assert files["tiles"] == plan.path(layout.TILES, cohort="c", slide="s2")
    assert files["qc"] == plan.path(layout.MASK_QC, cohort="c", slide="s2")
    args = RuleInputs(plan).wsi_prep_batch_args("c", ["s1", "s2"])
    assert f"--tiles '{files['tiles']}'" in args and args.endswith("--mpp auto --mpp 0.25")
    assert "slides/s 2.svs'" in args  # the sheet's file, quoted
    store = plan.path(layout.FEATURES, cohort="c", slide="s3", encoder=plan.encoder)
    assert RuleInputs(plan).embed_batch_args("c", ["s3"]).endswith(f"--out '{store}'")


def test_heatmap_fold_args_match_inputs_by_fold(tmp_path: Path) -> None:
    root = "r ü/c/survival/teacher"
    inp = SimpleNamespace(checkpoint=[f"{root}/fold1/checkpoint.st", f"{root}/fold0/checkpoint.st"],
                          predictions=[f"{root}/fold0/p.parquet", f"{root}/fold1/p.parquet"])
    args = RuleInputs.heatmap_fold_args(None, inp, [f"{root}/fold0/heatmaps", f"{root}/fold1/heatmaps"])
    assert args == (f"--checkpoint '{root}/fold0/checkpoint.st' --predictions '{root}/fold0/p.parquet' "
                    f"--out '{root}/fold0/heatmaps' --checkpoint '{root}/fold1/checkpoint.st' "
                    f"--predictions '{root}/fold1/p.parquet' --out '{root}/fold1/heatmaps'")


def test_wsi_prep_refuses_a_missing_per_slide_option(caplog: pytest.LogCaptureFixture) -> None:
    from duopath.cli import app

    res = CliRunner().invoke(app, ["wsi-prep", "a.svs", "b.svs", "--slide-id", "a", "--slide-id", "b",
                                   *[a for n in PREP_OUTPUTS for a in (f"--{n.replace('_', '-')}", "x")],
                                   "--segmentation", "{}", "--tiling", "{}"])
    assert res.exit_code == 1 and "2 slide(s) but 1 --mask value(s): give one per slide" in caplog.text
    heat = CliRunner().invoke(app, ["heatmaps", "--checkpoint", "a", "--checkpoint", "b", "--predictions",
                                    "p", "--sheet", "s", "--features-dir", "f", "--out", "o"])
    assert heat.exit_code == 2 and "one of each per fold" in re.sub(r"[\s│]+", " ", heat.output)


@pytest.mark.slow
def test_batched_segment_and_tile_through_snakemake(tmp_path: Path, cmu_cohort: list[str]) -> None:
    from tests.test_workflow import job_counts, snakemake

    names = cmu_cohort
    config = {"output_dir": "output", "segmentation": {"slides_per_job": 2},
              "cohorts": {"tiny": {"sample_sheet": "s.csv", "slide_dir": "slides"}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "output"
    files = {n: {k: out / p.format(cohort="tiny", slide=n) for k, p in
                 (("mask", layout.MASK_PNG), ("meta", layout.MASK_JSON), ("tiles", layout.TILES),
                  ("tiles_qc", layout.TILES_QC))} for n in names}
    targets = [str(f["tiles"].relative_to(tmp_path)) for f in files.values()]
    run = snakemake(tmp_path, *targets, "--cores", "2")
    assert run.returncode == 0, run.stderr[-4000:]
    jobs = job_counts(run)
    assert jobs.get("wsi_prep_batch_tiny_0") == "1" and jobs.get("wsi_prep_batch_tiny_1") == "1", jobs
    assert "segment" not in jobs and "tile" not in jobs, "no per-slide job when slides are batched"
    for f in files.values():
        assert all(p.exists() for p in f.values()) and len(pd.read_parquet(f["tiles"])) > 0
    assert (out / "benchmarks/tiny/wsi_prep/batch_0.tsv").exists()
    log = (out / "logs/wsi_prep/tiny/batch_0.log").read_text()
    assert "2 slides segmented and tiled" in log

    # a lost slide's outputs: the default plan redoes its batch (the documented trade-off) ...
    tiles_b = pd.read_parquet(files["cmu_b"]["tiles"])
    for p in files["cmu_b"].values():
        p.unlink()
    dry = snakemake(tmp_path, *targets, "-n")
    assert job_counts(dry).get("wsi_prep_batch_tiny_0") == "1", dry.stdout[-2000:]
    # ... and the per-slide rules redo that slide alone, the others untouched
    before = {k: files["cmu_a"][k].stat().st_mtime_ns for k in ("mask", "tiles")}
    run = snakemake(tmp_path, targets[1], "--cores", "2", "--allowed-rules", "segment", "tile")
    assert run.returncode == 0, run.stderr[-4000:]
    assert job_counts(run) == {"segment": "1", "tile": "1", "total": "2"}
    assert pd.read_parquet(files["cmu_b"]["tiles"]).equals(tiles_b)  # same as in the batch
    assert {k: files["cmu_a"][k].stat().st_mtime_ns for k in ("mask", "tiles")} == before
