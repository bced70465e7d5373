"""Batched embedding in the DAG: K slides per `duopath embed` process, one store per slide, and
one slide still re-runnable alone (encoder.slides_per_job, rules/embed.smk)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
import zarr

from duopath import layout
from duopath.batches import embed_args, slide_batches
from tests.test_workflow import job_counts, snakemake

pytestmark = pytest.mark.slow


def test_slide_batches_are_fixed_chunks_of_sheet_order() -> None:
    assert slide_batches(["a", "b", "c", "d", "e"], 2) == [["a", "b"], ["c", "d"], ["e"]]
    assert slide_batches(["a", "b"], 5) == [["a", "b"]]
    with pytest.raises(ValueError):
        slide_batches(["a"], 0)


def test_embed_args_one_value_per_slide() -> None:
    kw = dict(slide_path=lambda s: f"/s/{s} x.svs", tiles=lambda s: f"t/{s}.parquet",
              store=lambda s: f"f/{s}.zarr")
    plain = embed_args(["a", "b"], mpp=lambda s: None, **kw)
    assert "--mpp" not in plain and plain.startswith("'/s/a x.svs' '/s/b x.svs' --tiles t/a.parquet")
    mixed = embed_args(["a", "b"], mpp=lambda s: 0.25 if s == "b" else None, **kw)
    assert mixed.endswith("--mpp auto --mpp 0.25")


def test_batched_embed_rules(tmp_path: Path, cmu_cohort: list[str]) -> None:
    names = cmu_cohort
    config = {"output_dir": "output",
              "cohorts": {"tiny": {"sample_sheet": "s.csv", "slide_dir": "slides"}},
              "tiling": {"max_tiles": 3},
              "encoder": {"num_workers": 0, "batch_size": 16, "slides_per_job": 2, "device": "cpu"}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    stores = {n: tmp_path / "output" / layout.FEATURES.format(cohort="tiny", slide=n,
                                                                encoder="efficientnet_lite0")
              for n in names}
    targets = [str(p.relative_to(tmp_path)) for p in stores.values()]
    run = snakemake(tmp_path, *targets, "--cores", "2")
    assert run.returncode == 0, run.stderr[-4000:]
    jobs = job_counts(run)
    assert jobs.get("embed_batch_tiny_0") == "1" and jobs.get("embed_batch_tiny_1") == "1", jobs
    assert "embed" not in jobs, "no per-slide job when slides are batched"
    for n, store in stores.items():
        assert zarr.open_group(str(store), mode="r").attrs["slide_id"] == n
    log = (tmp_path / "output/logs/embed/tiny/efficientnet_lite0/batch_0.log").read_text()
    assert log.count("encoder efficientnet_lite0 ready") == 1, "one model load for two slides"

    # one slide alone: only its store is redone, by the per-slide rule
    shutil.rmtree(stores["cmu_b"])
    before = stores["cmu_a"].stat().st_mtime_ns
    run = snakemake(tmp_path, targets[1], "--cores", "2", "--allowed-rules", "embed")
    assert run.returncode == 0, run.stderr[-4000:]
    assert job_counts(run) == {"embed": "1", "total": "1"}
    assert stores["cmu_b"].exists() and stores["cmu_a"].stat().st_mtime_ns == before
