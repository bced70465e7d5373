"""Tests of the embedded demo cohort: contract, slide format, planted truth, determinism.

One tiny cohort is written once per module (and a second time for the determinism check);
each test reads from it. Whole file: a few seconds on 2 cores.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import openslide
import pandas as pd
import pytest
from PIL import Image
from scipy.stats import spearmanr

from duopath.config import DemoConfig
from duopath.demo import DEMO_SHEET_COLUMNS, plan_demo, write_demo
from duopath.demo.rna import TME_SETS, TUMOUR_SETS, hallmark_sets, protein_coding_symbols
from duopath.demo.slides import LABEL_DOWNSAMPLE, PEN, STROMA, TUMOUR, count_tiles, render_slide
from duopath.demo.textures import load_texture_bank, stain_densities
from duopath.demo.truth import simulate_patients, slides_of
from duopath.demo.writer import TILE_UM, slide_specs

TINY = DemoConfig(n_patients=12, n_sites=3, tissue_mm=(0.6, 0.45), n_genes=300, seed=3)


def _read_csv(path: Path, **kw) -> pd.DataFrame:
    # keep_default_na=False: an empty rna_sample_id is "" (missing RNA), not NaN.
    return pd.read_csv(path, keep_default_na=False, **kw)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    write_demo(TINY, out)
    return out


@pytest.fixture(scope="module")
def truth(demo_dir: Path) -> pd.DataFrame:
    return _read_csv(demo_dir / "truth.csv")


@pytest.fixture(scope="module")
def slide_truth(demo_dir: Path, truth: pd.DataFrame) -> pd.DataFrame:
    per_slide = _read_csv(demo_dir / "truth_slides.csv")
    return per_slide.merge(truth[["patient_id", "tumour_factor", "tme_factor"]], on="patient_id")


# --- plan -----------------------------------------------------------------------------------


def test_plan_is_deterministic_cheap_and_well_formed() -> None:
    cfg = DemoConfig()
    plan = plan_demo(cfg)
    pd.testing.assert_frame_equal(plan, plan_demo(cfg))
    assert tuple(plan.columns) == DEMO_SHEET_COLUMNS
    assert plan["slide_id"].is_unique
    assert set(plan["event"]) <= {0, 1} and plan["event"].dtype.kind == "i"
    assert (plan["time"] > 0).all() and plan["time"].dtype.kind == "f"
    assert plan["site"].nunique() == cfg.n_sites >= 3
    assert set(plan["label"]) == {"low", "high"}
    assert (plan["slide_path"] == "slides/" + plan["slide_id"] + ".tiff").all()

    patients = plan.drop_duplicates("patient_id")
    assert len(patients) == cfg.n_patients
    assert 1 <= (patients["rna_sample_id"] == "").sum() <= 2  # missing-modality cases
    assert plan.groupby("patient_id").size().max() == 2  # some patients have two slides
    assert cfg.n_patients < len(plan) <= 1.3 * cfg.n_patients  # most have one: small cohort cost
    # site-disjoint test folds (one site each) hold 20-30 patients: readable comparisons
    assert patients.groupby("site").size().between(20, 30).all()
    censored = 1 - patients["event"].mean()
    assert 0.2 <= censored <= 0.5
    # A patient's clinical data are identical on all of its slides.
    assert (plan.groupby("patient_id")[["time", "event", "label", "site"]].nunique() == 1).all().all()

    best = min(_timed(plan_demo, cfg) for _ in range(3))
    assert best < 0.1, f"plan_demo took {best:.3f} s; Snakemake calls it at DAG-parse time"


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def test_plan_depends_only_on_cohort_knobs() -> None:
    """Image/RNA settings must not reshuffle patients (slide ids are Snakemake wildcards)."""
    other = TINY.model_copy(update={"n_genes": 900, "tissue_mm": (1.0, 0.8), "jpeg_quality": 70})
    pd.testing.assert_frame_equal(plan_demo(TINY), plan_demo(other))
    assert not plan_demo(TINY).equals(plan_demo(TINY.model_copy(update={"seed": 4})))


def test_samples_csv_is_the_plan(demo_dir: Path) -> None:
    written = _read_csv(demo_dir / "samples.csv")
    pd.testing.assert_frame_equal(written, plan_demo(TINY))
    for rel in written["slide_path"]:
        assert (demo_dir / rel).is_file()
    assert (demo_dir / "README.md").read_text().startswith("# duopath demo cohort")
    assert not list(demo_dir.rglob(".*.tmp-*")), "atomic writes left temporaries behind"


# --- slides ---------------------------------------------------------------------------------


def test_slides_open_in_openslide_with_real_mpp(demo_dir: Path) -> None:
    plan = plan_demo(TINY)
    for rel in plan["slide_path"]:
        with openslide.OpenSlide(str(demo_dir / rel)) as slide:
            assert float(slide.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(TINY.mpp)
            assert float(slide.properties[openslide.PROPERTY_NAME_MPP_Y]) == pytest.approx(TINY.mpp)
            assert slide.level_count >= 2
            assert slide.level_downsamples == pytest.approx([1.0, 4.0, 16.0][: slide.level_count])
            w, h = slide.dimensions
            for level, (lw, lh) in enumerate(slide.level_dimensions):
                assert (lw, lh) == (w // 4**level, h // 4**level)
                region = slide.read_region((w // 2 - 64, h // 2 - 64), level, (64, 64))
                assert region.size == (64, 64)
            centre = np.asarray(slide.read_region((w // 2 - 128, h // 2 - 128), 0, (256, 256)))
            corner = np.asarray(slide.read_region((0, 0), 0, (128, 128)))
        centre, corner = centre[..., :3].astype(float), corner[..., :3].astype(float)
        assert centre.mean() < 200 and centre.std() > 15, f"{rel}: no tissue in the middle"
        assert corner.min() > 215 and np.ptp(corner.mean(axis=(0, 1))) < 10, f"{rel}: corner not glass"
        assert corner.std() > 0.5, f"{rel}: glass is perfectly flat (unrealistic)"


def test_pen_mark_is_inked_and_labelled(demo_dir: Path, slide_truth: pd.DataFrame) -> None:
    pen_slides = slide_truth[slide_truth["pen"] != ""]
    assert len(pen_slides) == TINY.pen_mark_slides == 1
    sid = pen_slides["slide_id"].iloc[0]
    labels = np.asarray(Image.open(demo_dir / "truth_masks" / f"{sid}.png"))
    assert (labels == PEN).any()
    with openslide.OpenSlide(str(demo_dir / "slides" / f"{sid}.tiff")) as slide:
        thumb = np.asarray(slide.read_region((0, 0), 2, slide.level_dimensions[2]))[..., :3]
    ink = thumb[labels[: thumb.shape[0], : thumb.shape[1]] == PEN].astype(float)
    assert (ink[:, 2].mean() > ink[:, 0].mean() + 30) or (ink[:, 1].mean() > ink[:, 0].mean() + 30)


def test_count_tiles_on_a_known_mask() -> None:
    labels = np.zeros((56, 56), dtype=np.uint8)  # 448 µm square at 8 µm/px: 2x2 tiles of 224 µm
    labels[:28, :28] = STROMA
    labels[28:, :14] = TUMOUR  # half of the lower-left tile
    assert count_tiles(labels, 224.0, 0.5) == 2
    assert count_tiles(labels, 224.0, 0.5, min_fraction=0.6) == 1
    assert count_tiles(labels, 112.0, 0.5) == 6


def test_default_slides_meet_the_tile_budget(slide_truth: pd.DataFrame) -> None:
    """The default cohort must embed in ~2-3 minutes on 2 CPU cores: ~3,000 tiles in all, i.e.
    ~5 tiles at 10x and ~20 at 20x per slide. Three default-size slides are rendered (not
    written) and counted, and the cohort total projected from them."""
    assert (slide_truth["tiles_20x"] >= 2 * slide_truth["tiles_10x"]).all()
    cfg = DemoConfig()
    bank = load_texture_bank(cfg.mpp)
    specs = slide_specs(cfg, slides_of(simulate_patients(cfg)))
    per_slide = []
    for spec in specs[:3]:
        labels = render_slide(spec, bank).labels
        n10, n20 = count_tiles(labels, TILE_UM["10x"], cfg.mpp), count_tiles(labels, TILE_UM["20x"], cfg.mpp)
        assert 2 <= n10 <= 10 and 8 <= n20 <= 40
        per_slide.append(n10 + n20)
    assert 2000 <= np.mean(per_slide) * len(specs) <= 4000


# --- planted truth ----------------------------------------------------------------------------


def test_tumour_share_follows_tumour_factor(slide_truth: pd.DataFrame, truth: pd.DataFrame) -> None:
    rho, _ = spearmanr(truth["tumour_factor"], truth["tumour_share_observed"])
    assert rho > 0.8
    assert np.allclose(slide_truth["tumour_share"], slide_truth["tumour_share_target"], atol=0.03)


def test_pixels_agree_with_truth_masks(demo_dir: Path, slide_truth: pd.DataFrame) -> None:
    """Measured straight from the slide pixels: tumour regions are hematoxylin-rich, and the
    hematoxylin share of the tissue rises with the tumour factor."""
    hema_share = []
    for sid in slide_truth["slide_id"]:
        labels = np.asarray(Image.open(demo_dir / "truth_masks" / f"{sid}.png"))
        with openslide.OpenSlide(str(demo_dir / "slides" / f"{sid}.tiff")) as slide:
            assert slide.level_downsamples[2] == LABEL_DOWNSAMPLE
            thumb = np.asarray(slide.read_region((0, 0), 2, slide.level_dimensions[2]))[..., :3]
        hema, eosin = stain_densities(thumb)
        tumour, stroma = labels == TUMOUR, labels == STROMA
        assert hema[tumour].mean() > hema[stroma].mean() + 0.1, sid
        tissue = tumour | stroma
        hema_share.append(float((hema[tissue] > eosin[tissue] + 0.2).mean()))
    rho, _ = spearmanr(slide_truth["tumour_factor"], hema_share)
    assert rho > 0.7


def test_immune_density_follows_tme_factor(slide_truth: pd.DataFrame) -> None:
    stroma_mm2 = slide_truth["tissue_mm2"] * (1 - slide_truth["tumour_share"])
    rho, _ = spearmanr(slide_truth["tme_factor"], slide_truth["n_immune_cells"] / stroma_mm2)
    assert rho > 0.7


def test_rna_counts_are_real_genes_with_planted_programmes(demo_dir: Path, truth: pd.DataFrame) -> None:
    counts = pd.read_csv(demo_dir / "rna_counts.tsv", sep="\t")
    assert counts.columns[0] == "gene" and counts["gene"].is_unique
    assert len(counts) == TINY.n_genes
    hallmark = {g for genes in hallmark_sets().values() for g in genes}
    assert set(counts["gene"]) <= hallmark | set(protein_coding_symbols())
    assert counts["gene"].isin(hallmark).mean() > 0.5
    values = counts.iloc[:, 1:]
    assert all(dtype.kind == "i" for dtype in values.dtypes) and (values >= 0).all().all()
    with_rna = truth[truth["rna_sample_id"] != ""]
    assert list(values.columns) == list(with_rna["rna_sample_id"])
    assert len(with_rna) < len(truth)

    log_cpm = np.log1p(values / values.sum() * 1e6)
    log_cpm.index = counts["gene"]
    sets = hallmark_sets()
    for names, factor in ((TUMOUR_SETS[:3], "tumour_factor"), (TME_SETS[:4], "tme_factor")):
        genes = log_cpm.index.intersection([g for n in names for g in sets[n]])
        assert len(genes) >= 10
        score = log_cpm.loc[genes].mean()
        rho, _ = spearmanr(score.to_numpy(), with_rna[factor].to_numpy())
        assert rho > 0.5, f"{factor}: rho {rho:.2f}"


def test_outcome_and_label_follow_the_factors(truth: pd.DataFrame) -> None:
    """On a large simulated cohort (no images): the risk is learnable but not trivially so, and
    the grade is a noisy mix of both factors, so that models differ (no AUC of 1.0)."""
    from sklearn.metrics import roc_auc_score
    from sksurv.metrics import concordance_index_censored

    assert set(truth.columns) >= {"tumour_factor", "tme_factor", "risk", "tumour_share_observed",
                                  "label_probability"}
    patients = simulate_patients(DemoConfig(n_patients=400, seed=11))
    cindex = concordance_index_censored(
        patients["event"].astype(bool), patients["time"], patients["linear_predictor"]
    )[0]
    assert 0.7 <= cindex <= 0.85
    assert 0.25 <= 1 - patients["event"].mean() <= 0.45
    high = patients["label"] == "high"
    assert abs(high.mean() - 0.5) < 0.01
    ceiling = roc_auc_score(high, patients["label_probability"])
    tumour_only = roc_auc_score(high, patients["tumour_factor"])
    tme_only = roc_auc_score(high, -patients["tme_factor"])
    assert 0.8 <= ceiling <= 0.92  # the truth itself is not perfect: label noise
    assert tumour_only < ceiling - 0.03 and 0.6 < tme_only < ceiling - 0.05  # both factors matter
    # the true probability is calibrated: its mean within quintiles tracks the observed rate
    quintiles = pd.qcut(patients["label_probability"], 5, labels=False)
    observed = high.groupby(quintiles).mean()
    predicted = patients["label_probability"].groupby(quintiles).mean()
    assert np.abs(observed - predicted).max() < 0.15


# --- determinism and errors ---------------------------------------------------------------------


def test_same_seed_writes_identical_bytes(demo_dir: Path, tmp_path: Path) -> None:
    """Also across worker counts: the module fixture renders serially, this one in 2 processes."""
    write_demo(TINY, tmp_path, workers=2)
    files = sorted(p.relative_to(demo_dir) for p in demo_dir.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    for rel in files:
        assert (demo_dir / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel


def test_bad_config_fails_before_writing(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    with pytest.raises(ValueError, match="n_genes"):
        write_demo(TINY.model_copy(update={"n_genes": 29000}), out)
    with pytest.raises(ValueError, match="200 Mpx"):
        write_demo(TINY.model_copy(update={"tissue_mm": (12.0, 10.0)}), out)
    assert not out.exists()
