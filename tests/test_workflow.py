"""End to end: the real Snakemake DAG on a tiny cohort (2 real-slide copies + 1 corrupt file)
and a tiny generated demo cohort; a second run is a no-op; one cohort can run alone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
import zarr

from duopath import layout

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str, timeout: int = 2700) -> subprocess.CompletedProcess:
    # PATH deliberately without the venv's bin: the README runs `.venv/bin/snakemake` without
    # activating the venv, so the workflow itself must find the `duopath` CLI.
    venv_bin = str(Path(sys.executable).parent)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"),
           "--directory", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def job_counts(run: subprocess.CompletedProcess) -> dict[str, str]:
    """Snakemake's job-count table of a run (rule -> count, and ``total``)."""
    return dict(re.findall(r"^(\w+)\s+(\d+)$", run.stdout + run.stderr, flags=re.M))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, cmu_slide: Path) -> Path:
    work = tmp_path_factory.mktemp("dag")
    slides = work / "slides"
    slides.mkdir()
    for name in ("cmu_a.svs", "cmu_b.svs", "cmu_c.svs"):
        shutil.copy(cmu_slide, slides / name)
    (slides / "broken.svs").write_bytes(b"this is not a slide" * 50)
    pd.DataFrame({
        "patient_id": ["P1", "P2", "P3", "P4"],
        "slide_id": ["cmu_a", "cmu_b", "broken", "cmu_c"],
        "slide_path": ["cmu_a.svs", "cmu_b.svs", "broken.svs", "cmu_c.svs"],
        "site": ["S1", "S2", "S1", "S2"],
        "time": [10.0, 20.0, 5.0, 7.0],
        "event": [1, 0, 1, 0],
    }).to_csv(work / "samples.csv", index=False)
    config = {
        "output_dir": "output",
        "cohorts": {
            "tiny": {"sample_sheet": "samples.csv", "slide_dir": "slides"},
            "minidemo": {"demo": {"n_patients": 14, "n_sites": 2, "seed": 3,
                                  "tissue_mm": [0.7, 0.5], "n_genes": 600}},
        },
        "encoder": {"num_workers": 1, "batch_size": 32},
        "training": {"folds": 2},
        "teacher": {"dim": 16, "time_bins": 2, "ablations": ["rna_mean"], "optim": {"epochs": 2}},
        "student": {"optim": {"epochs": 2}},
        # the RNA-only baseline: trains on minidemo; tiny has no RNA, so it has no models at all
        "baselines": {"models": ["snn"], "dim": 8, "gene_hidden": 8, "n_layers": 1},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(work, "--cores", "2")
    assert run.returncode == 0, run.stderr[-5000:]
    return work


def test_outputs_per_slide(finished_run: Path) -> None:
    out = finished_run / "output"
    for cohort in ("tiny", "minidemo"):
        summary = pd.read_csv(out / layout.WSI_SUMMARY.format(cohort=cohort))
        ok = summary[summary["status"] == "ok"]
        assert len(ok) >= 2
        for slide in ok["slide_id"]:
            f = {k: out / getattr(layout, k).format(cohort=cohort, slide=slide,
                                                  encoder="efficientnet_lite0")
                 for k in ("MASK_PNG", "MASK_JSON", "MASK_QC", "TILES", "TILES_QC", "FEATURES")}
            assert all(p.exists() for p in f.values()), f
            tiles = pd.read_parquet(f["TILES"])
            root = zarr.open_group(str(f["FEATURES"]), mode="r")
            assert root.attrs["encoder"] == "efficientnet_lite0" and root.attrs["status"] == "ok"
            for mag in ("10x", "20x"):
                t = tiles[tiles["magnification"] == mag]
                feats = root[mag]["features"]
                assert feats.shape == (len(t), 1280) and feats.dtype == np.float16
                np.testing.assert_array_equal(root[mag]["coords"][:], t[["x", "y"]].to_numpy())
                assert np.isfinite(feats[:].astype(np.float32)).all()
            assert len(tiles[tiles["magnification"] == "10x"]) == root["10x"].attrs["n_tiles"]


def test_rna_and_splits_of_the_demo(finished_run: Path) -> None:
    import anndata as ad

    out = finished_run / "output"
    adata = ad.read_h5ad(out / layout.RNA_H5AD.format(cohort="minidemo"))
    sheet = pd.read_csv(out / layout.SHEET.format(cohort="minidemo"), keep_default_na=False)
    with_rna = set(sheet.loc[sheet["rna_sample_id"] != "", "patient_id"])
    assert set(adata.obs_names) == with_rna
    assert adata.var["group_T"].sum() > 0 and adata.var["group_E"].sum() > 0
    assert adata.obsm["pathways"].shape[0] == adata.n_obs
    assert not (out / layout.RNA_H5AD.format(cohort="tiny")).exists()  # no RNA configured
    splits = pd.read_csv(out / layout.SPLITS.format(cohort="minidemo"))
    assert set(splits["patient_id"]) == set(sheet["patient_id"])
    for model in ("teacher", "teacher_rna_mean"):
        for fold in range(2):
            res = out / layout.RESULTS_DIR.format(cohort="minidemo", task="survival", model=model,
                                                  fold=fold)
            pred = pd.read_parquet(res / "predictions.parquet")
            test = splits[(splits["fold"] == fold) & (splits["role"] == "test")]
            assert set(pred["patient_id"]) <= set(test["patient_id"])
            assert (res / "metrics.json").exists() and (res / "checkpoint.safetensors").exists()


def test_students_and_report(finished_run: Path) -> None:
    from html.parser import HTMLParser

    out = finished_run / "output"
    for model in ("student", "student_nokd"):
        res = out / layout.RESULTS_DIR.format(cohort="minidemo", task="survival", model=model, fold=0)
        assert (res / "predictions.parquet").exists() and (res / "checkpoint.safetensors").exists()
    metrics = pd.read_csv(out / layout.METRICS_CSV.format(cohort="minidemo"))
    assert {"teacher", "teacher_rna_mean", "student", "student_nokd", "snn"} <= set(metrics["model"])
    html = (out / layout.REPORT.format(cohort="minidemo")).read_text(encoding="utf-8")

    class Images(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.srcs: list[str] = []

        def handle_starttag(self, tag: str, attrs: list) -> None:
            if tag == "img":
                self.srcs.append(dict(attrs).get("src", ""))

    parser = Images()
    parser.feed(html)
    assert parser.srcs and all(s.startswith(("data:image/png;base64,", "data:image/jpeg;base64,"))
                               for s in parser.srcs)
    assert "student_nokd" in html and "teacher_rna_mean" in html


def test_bad_slide_is_reported_not_fatal(finished_run: Path) -> None:
    summary = pd.read_csv(finished_run / "output" / layout.WSI_SUMMARY.format(cohort="tiny"))
    broken = summary.set_index("slide_id").loc["broken"]
    assert broken["status"] == "failed" and "OpenSlide cannot open" in broken["error"]


def test_second_run_does_nothing(finished_run: Path) -> None:
    run = snakemake(finished_run, "--cores", "2", "-n")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Nothing to be done" in run.stdout + run.stderr


HEAVY_STAGES = ("demo", "segment", "tile", "embed", "rna", "teacher", "baseline", "student", "heatmaps",
                "evaluate", "qc_contact_sheet", "report")


def test_benchmarks_contact_sheet_and_snakemake_report(finished_run: Path) -> None:
    import zipfile

    from PIL import Image

    out = finished_run / "output"
    for stage in HEAVY_STAGES:
        assert list((out / "benchmarks").glob(f"*/{stage}/**/*.tsv")), f"no benchmark of {stage}"
    html = (out / layout.REPORT.format(cohort="minidemo")).read_text(encoding="utf-8")
    assert 'id="resources"' in html and "Slowest jobs" in html and ">teacher<" in html
    figures = sorted(p.name for p in (out / layout.REPORT_FIGURES.format(cohort="minidemo")).iterdir())
    assert "survival.kaplan_meier_teacher.png" in figures and not any("heatmap" in f for f in figures)
    for cohort in ("tiny", "minidemo"):
        with Image.open(out / layout.QC_CONTACT_SHEET.format(cohort=cohort)) as sheet:
            assert sheet.width > 256
    run = snakemake(finished_run, "--report", "report.zip")
    assert run.returncode == 0, run.stderr[-3000:]
    names = zipfile.ZipFile(finished_run / "report.zip").namelist()
    for expected in ("contact_sheet.png", "summary.csv", "comparisons.csv", "wsi_summary.csv",
                     "cmu_a.tiles.jpg", "survival.kaplan_meier_teacher.png", "report.html"):
        assert any(n.endswith(expected) for n in names), f"{expected} not in the Snakemake report"
    heatmaps = sorted(out.glob("results/minidemo/*/*/fold*/heatmaps/*.png"))
    assert heatmaps and any(n.endswith("/" + heatmaps[0].name) for n in names)  # stored by file name


def test_one_cohort_alone_and_interrupted_store_redone(finished_run: Path) -> None:
    """A run killed while writing cmu_b's store left only a temporary store and no summary."""
    out = finished_run / "output"
    store = out / layout.FEATURES.format(cohort="tiny", slide="cmu_b", encoder="efficientnet_lite0")
    shutil.rmtree(store)
    (out / layout.WSI_SUMMARY.format(cohort="tiny")).unlink()
    stale = store.parent / ".cmu_b.tmp-killed.zarr"  # what a killed writer leaves behind
    stale.mkdir()
    dry = snakemake(finished_run, "--cores", "2", "-n", "--config", "only_cohorts=tiny")
    assert dry.returncode == 0, dry.stderr[-3000:]
    text = dry.stdout + dry.stderr
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", text, flags=re.M))
    assert jobs.get("embed") == "1" and jobs.get("wsi_summary") == "1", text[-2000:]
    assert "segment" not in jobs and "minidemo" not in text
    run = snakemake(finished_run, "--cores", "2", "--config", "only_cohorts=tiny")
    assert run.returncode == 0, run.stderr[-3000:]
    assert store.exists() and not stale.exists()
    assert zarr.open_group(str(store), mode="r").attrs["status"] == "ok"
