"""Bad slides never stop a cohort (``on_slide_error: skip``): each becomes a ``failed`` row of
the WSI summary with the stage and the error, and stops the run only under ``fail``.

The damaged slides open fine (header intact) and fail only when pixels are decoded: at the
thumbnail level read by ``segment``, at full resolution in ``embed``, inside a DataLoader worker."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import zarr

from duopath.config import EncoderConfig, SegmentationConfig, TilingConfig
from duopath.encoding.extract import embed_slide
from duopath.slides.reader import SlideError
from duopath.slides.stages import PrepJob, prep_slides, segment_slide, tile_slide
from duopath.slides.summary import summarise

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SEGMENT_FAILURES = {
    "blank": "no tissue found",
    "tiny": r"the slide is only 24 × 24 µm .* smaller than the smallest tissue piece",
    "damaged_thumbnail": r"cannot read its pixel data at level 1,.* the file is damaged",
    "truncated": r"OpenSlide cannot open it .* is the file complete",
    "zero_bytes": "OpenSlide cannot open it",
    "not_a_slide": "OpenSlide cannot open it",
    "no_mpp": r"no microns-per-pixel .* add an `mpp` column to the sample sheet",
    "missing": r"file does not exist -- check slide_path",
}


def _segment(slide: Path, out: Path, on_error: str = "skip") -> dict:
    name = slide.stem
    return segment_slide(slide, name, SegmentationConfig(), mask_png=out / f"{name}.png",
                         mask_json=out / f"{name}.json", qc_image=out / f"{name}.jpg",
                         on_error=on_error)


@pytest.mark.parametrize("kind", sorted(SEGMENT_FAILURES))
def test_segment_records_a_bad_slide_or_stops_under_fail(kind: str, bad_slides: dict,
                                                         tmp_path: Path) -> None:
    slide = bad_slides.get(kind, tmp_path / "missing.tiff")
    meta = _segment(slide, tmp_path)
    assert meta["status"] == "failed" and meta["stage"] == "segment"
    assert re.search(SEGMENT_FAILURES[kind], meta["error"]), meta["error"]
    assert json.loads((tmp_path / f"{slide.stem}.json").read_text())["status"] == "failed"
    with pytest.raises(SlideError, match=SEGMENT_FAILURES[kind]):
        _segment(slide, tmp_path / "fail", on_error="fail")


def _prep_job(slide: Path, out: Path) -> PrepJob:
    n = slide.stem
    return PrepJob(slide, n, out / f"{n}.png", out / f"{n}.json", out / f"{n}.mask.jpg",
                   out / f"{n}.parquet", out / f"{n}.tiles.jpg")


def test_a_bad_slide_inside_a_batch_is_a_failed_row_and_the_batch_goes_on(bad_slides: dict,
                                                                           tmp_path: Path) -> None:
    """`duopath wsi-prep` (segment + tile of several slides in one process): a slide that fails
    in the middle of the batch gets its failed mask JSON and an empty tile table, the slides
    after it are still done, and each slide's files are those of the per-slide commands."""
    kinds = ["good", "damaged_thumbnail", "no_mpp", "blank"]
    jobs = [_prep_job(bad_slides[k], tmp_path) for k in kinds]
    good_after = _prep_job(bad_slides["good"], tmp_path / "after")  # a good slide after the bad ones
    (tmp_path / "after").mkdir()
    metas = prep_slides([*jobs, good_after], SegmentationConfig(), TilingConfig())
    assert [m["status"] for m in metas] == ["ok", "failed", "failed", "failed", "ok"]
    for job, kind in zip(jobs[1:], kinds[1:], strict=True):
        saved = json.loads(job.mask_json.read_text())
        assert saved["status"] == "failed" and saved["stage"] == "segment"
        assert re.search(SEGMENT_FAILURES[kind], saved["error"]), saved["error"]
        assert pd.read_parquet(job.tiles).empty and job.tiles_qc.exists()
    tiles = pd.read_parquet(good_after.tiles)
    assert len(tiles) > 0 and tiles.equals(pd.read_parquet(jobs[0].tiles))
    # the per-slide commands write the same tile table for the same slide
    single = tmp_path / "single"
    single.mkdir()
    _segment(bad_slides["good"], single)
    alone = tile_slide(single / "good.png", single / "good.json", TilingConfig(),
                       tiles_out=single / "good.parquet")
    assert alone.equals(tiles)
    summary = summarise([j.mask_json for j in jobs], [j.tiles for j in jobs], tmp_path / "s.csv")
    assert summary.set_index("slide_id").loc["damaged_thumbnail", "stage"] == "segment"
    with pytest.raises(SlideError, match="cannot read its pixel data"):
        prep_slides([_prep_job(bad_slides["damaged_thumbnail"], tmp_path / "after")],
                    SegmentationConfig(), TilingConfig(), on_error="fail")


@pytest.fixture(scope="module")
def encoder():
    from duopath.encoding.registry import load_encoder

    return load_encoder("efficientnet_lite0", None, device="cpu")


def _through_embed(slide: Path, out: Path, encoder, on_error: str = "skip") -> tuple[Path, Path, Path]:
    name = slide.stem
    _segment(slide, out)
    tile_slide(out / f"{name}.png", out / f"{name}.json", TilingConfig(), tiles_out=out / f"{name}.parquet")
    store = out / f"{name}.zarr"
    # one worker process: the damaged read happens in a DataLoader worker, as in the DAG
    embed_slide(slide, out / f"{name}.parquet", store, EncoderConfig(num_workers=1, batch_size=16),
                slide_id=name, encoder=encoder, on_error=on_error)
    return out / f"{name}.json", out / f"{name}.parquet", store


def test_damaged_tile_data_fails_in_embed_and_is_a_summary_row(bad_slides: dict, tmp_path: Path,
                                                               encoder) -> None:
    """It killed `embed` with an OpenSlideError from a worker; now a failed store + row."""
    rows = [_through_embed(bad_slides[k], tmp_path, encoder)
            for k in ("good", "damaged_full_res", "damaged_thumbnail")]
    attrs = dict(zarr.open_group(str(rows[1][2]), mode="r").attrs)
    assert attrs["status"] == "failed" and attrs["stage"] == "embed"
    assert "cannot read its pixel data at level 0" in attrs["error"]
    assert not list(zarr.open_group(str(rows[1][2]), mode="r").group_keys())
    table = summarise(*map(list, zip(*[r[:2] for r in rows], strict=True)), tmp_path / "summary.csv",
                      feature_stores=[r[2] for r in rows]).set_index("slide_id")
    assert table.loc["good", "status"] == "ok" and table.loc["good", "stage"] == ""
    assert table.loc["damaged_full_res", ["status", "stage"]].tolist() == ["failed", "embed"]
    assert table.loc["damaged_thumbnail", ["status", "stage"]].tolist() == ["failed", "segment"]
    assert "the file is damaged" in table.loc["damaged_full_res", "error"]
    saved = pd.read_csv(tmp_path / "summary.csv", keep_default_na=False).set_index("slide_id")
    assert saved.loc["damaged_full_res", "stage"] == "embed"
    with pytest.raises(SlideError, match="cannot read its pixel data"):
        _through_embed(bad_slides["damaged_full_res"], tmp_path / "fail", encoder, on_error="fail")


@pytest.mark.slow
@pytest.mark.parametrize("per_job", [1, 3], ids=["per_slide", "batched"])
def test_dag_goes_on_past_damaged_slides(bad_slides: dict, tmp_path: Path, per_job: int) -> None:
    """Through Snakemake: segment and embed failures no longer stop the cohort's WSI half, with
    one job per slide and with slides batched (the bad ones inside a batch, not alone in one)."""
    import shutil
    import subprocess
    import sys

    import yaml

    from duopath import layout

    slides = tmp_path / "slides"
    slides.mkdir()
    names = ["good", "damaged_thumbnail", "damaged_full_res"]  # the segment failure mid-batch
    for name in names:
        shutil.copy(bad_slides[name], slides / f"{name}.tiff")
    pd.DataFrame({"patient_id": ["P1", "P2", "P3"], "slide_id": names,
                  "slide_path": [f"{n}.tiff" for n in names], "time": [5, 6, 7], "event": [1, 0, 1]}
                 ).to_csv(tmp_path / "samples.csv", index=False)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({
        "cohorts": {"tiny": {"sample_sheet": "samples.csv", "slide_dir": "slides"}},
        "segmentation": {"slides_per_job": per_job},
        "encoder": {"num_workers": 1, "batch_size": 16, "slides_per_job": per_job}}))
    target = layout.out("output", layout.WSI_SUMMARY, cohort="tiny")
    repo = Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(repo / "workflow" / "Snakefile"),
                          "--directory", str(tmp_path), "--cores", "2", target],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", run.stdout + run.stderr, flags=re.M))
    if per_job > 1:  # all three slides in one batch of each stage
        assert jobs.get("wsi_prep_batch_tiny_0") == "1" and jobs.get("embed_batch_tiny_0") == "1", jobs
        assert not {"segment", "tile", "embed"} & set(jobs), jobs
    else:
        assert jobs.get("segment") == "3" and jobs.get("tile") == "3", jobs
    summary = pd.read_csv(tmp_path / target, keep_default_na=False).set_index("slide_id")
    assert summary.loc["good", "status"] == "ok"
    assert summary.loc["damaged_thumbnail", ["status", "stage"]].tolist() == ["failed", "segment"]
    store = tmp_path / layout.out("output", layout.FEATURES, cohort="tiny", slide="damaged_full_res",
                                  encoder="efficientnet_lite0")
    attrs = zarr.open_group(str(store), mode="r").attrs
    assert attrs["status"] == "failed" and attrs["stage"] == "embed"
