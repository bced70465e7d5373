"""``write_demo``: render the whole demo cohort to a directory.

Layout of ``out_dir`` (every file written atomically; ``samples.csv`` last, so its presence
means the cohort is complete):

- ``slides/<slide_id>.tiff``  pyramidal JPEG TIFF, OpenSlide-readable, real mpp
- ``truth_masks/<slide_id>.png``  per-pixel truth on pyramid level 2 (16x): 0 glass, 1 stroma,
  2 tumour, 3 pen ink
- ``rna_counts.tsv``  genes x RNA samples, raw integer counts, first column ``gene``
- ``truth.csv``  per patient: hidden factors, risk, outcome, tissue composition
- ``truth_slides.csv``  per slide: realised tumour share, immune cells, tiles expected
- ``truth_genes.csv``  per gene: programme and planted loadings on the two factors
- ``README.md``  what the demo is and where its real data come from
- ``samples.csv``  the sample sheet, exactly :func:`duopath.demo.plan_demo`
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from duopath.config import TME_SETS, TUMOUR_SETS, DemoConfig
from duopath.demo.rna import HALLMARK_GMT, gene_truth, simulate_counts
from duopath.demo.slides import (
    LABEL_DOWNSAMPLE,
    PEN_INKS,
    SlideSpec,
    canvas_shape,
    count_tiles,
    render_slide,
)
from duopath.demo.textures import SOURCE_SLIDE, TextureBank, load_texture_bank
from duopath.demo.tiff import write_pyramidal_tiff
from duopath.demo.truth import (
    B_E,
    B_T,
    GRADE_E_WEIGHT,
    GRADE_NOISE,
    SHARE_JITTER,
    STREAM_SLIDES,
    plan_demo,
    simulate_patients,
    slides_of,
)
from duopath.io import write_image, write_table, write_text

log = logging.getLogger(__name__)

STREAM_SITES = 4
TILE_UM = {"10x": 224.0, "20x": 112.0}  # 224 px at 1.0 and at 0.5 µm/px


def slide_specs(cfg: DemoConfig, slides: pd.DataFrame) -> list[SlideSpec]:
    """One render spec per slide row, each with its own seeded stream (stable under reorder)."""
    pen_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, STREAM_SLIDES, 10**6]))
    n_pen = min(cfg.pen_mark_slides, len(slides))
    pen_rows = pen_rng.permutation(len(slides))[:n_pen]
    inks = list(PEN_INKS)
    pens = {int(row): inks[i % len(inks)] for i, row in enumerate(pen_rows)}

    specs = []
    for k, row in enumerate(slides.itertuples(index=False)):
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, STREAM_SLIDES, k]))
        share = float(np.clip(row.tumour_share + SHARE_JITTER * rng.standard_normal(), 0.05, 0.95))
        site_index = int(row.site[1:]) - 1
        site_seed = np.random.SeedSequence([cfg.seed, STREAM_SITES, site_index])
        specs.append(
            SlideSpec(
                slide_id=row.slide_id,
                seed=int(rng.integers(2**63)),
                mpp=cfg.mpp,
                tissue_mm=cfg.tissue_mm,
                tumour_factor=float(row.tumour_factor),
                tme_factor=float(row.tme_factor),
                tumour_share=share,
                immune_per_mm2=float(row.immune_per_mm2),
                site_index=site_index,
                site_seed=int(site_seed.generate_state(1)[0]),
                pen=pens.get(k),
            )
        )
    return specs


def _write_slide(spec: SlideSpec, cfg: DemoConfig, out_dir: Path, bank: TextureBank) -> dict:
    """Render one slide, write its TIFF and truth mask, return its ``truth_slides.csv`` row."""
    rendered = render_slide(spec, bank)
    write_pyramidal_tiff(
        out_dir / "slides" / f"{spec.slide_id}.tiff",
        rendered.rgb,
        cfg.mpp,
        quality=cfg.jpeg_quality,
        description=f"duopath demo slide {spec.slide_id} (synthetic; texture from {SOURCE_SLIDE})",
    )
    write_image(out_dir / "truth_masks" / f"{spec.slide_id}.png", Image.fromarray(rendered.labels))
    h, w = rendered.rgb.shape[:2]
    tissue_px = np.count_nonzero(np.isin(rendered.labels, (1, 2)))
    log.debug("slide %s: tumour share %.2f", spec.slide_id, rendered.tumour_share)
    return {
        "slide_id": spec.slide_id,
        "width": w,
        "height": h,
        "tumour_share_target": spec.tumour_share,
        "tumour_share": rendered.tumour_share,
        "immune_per_mm2": spec.immune_per_mm2,
        "n_immune_cells": rendered.n_immune,
        "tissue_mm2": tissue_px * (cfg.mpp * LABEL_DOWNSAMPLE / 1000.0) ** 2,
        "pen": spec.pen or "",
        "tiles_10x": count_tiles(rendered.labels, TILE_UM["10x"], cfg.mpp),
        "tiles_20x": count_tiles(rendered.labels, TILE_UM["20x"], cfg.mpp),
        "mask_downsample": LABEL_DOWNSAMPLE,
    }


# The texture bank of a parallel write: set before the worker processes fork, so they inherit
# it instead of each re-reading the source slide (seconds) or unpickling it per task.
_FORK_BANK: TextureBank | None = None


def _write_slide_forked(spec: SlideSpec, cfg: DemoConfig, out_dir: Path) -> dict:
    assert _FORK_BANK is not None, "set _FORK_BANK before forking the workers"
    return _write_slide(spec, cfg, out_dir, _FORK_BANK)


def _write_slides(
    specs: list[SlideSpec], cfg: DemoConfig, out_dir: Path, bank: TextureBank, workers: int
) -> list[dict]:
    """Every slide, in ``specs`` order; in ``workers`` forked processes when > 1.

    Each slide depends only on its own spec (its seed included), so the bytes written do not
    depend on ``workers``; only the wall time does.
    """
    global _FORK_BANK
    if workers <= 1 or len(specs) < 2 or "fork" not in mp.get_all_start_methods():
        return [_write_slide(spec, cfg, out_dir, bank) for spec in specs]
    _FORK_BANK = bank
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork")) as pool:
            return list(pool.map(_write_slide_forked, specs, repeat(cfg), repeat(out_dir), chunksize=4))
    finally:
        _FORK_BANK = None


def write_demo(cfg: DemoConfig, out_dir: Path, workers: int = 1) -> None:
    """Write the demo cohort described by ``cfg`` into ``out_dir`` (deterministic in ``cfg``).

    ``workers`` > 1 renders slides in that many forked processes (same bytes, less wall time).
    Configuration problems (too many genes, an absurd slide size) are raised before any file
    is written.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    patients = simulate_patients(cfg)
    slides = slides_of(patients)
    genes = gene_truth(cfg)
    canvas_shape(cfg.mpp, cfg.tissue_mm)
    bank = load_texture_bank(cfg.mpp)
    slide_rows = _write_slides(slide_specs(cfg, slides), cfg, out_dir, bank, workers)
    per_slide = slides[["patient_id", "slide_id"]].merge(pd.DataFrame(slide_rows), on="slide_id")
    write_table(out_dir / "truth_slides.csv", per_slide)

    write_table(out_dir / "rna_counts.tsv", simulate_counts(cfg, patients, genes))
    write_table(out_dir / "truth_genes.csv", genes)

    observed = per_slide.groupby("patient_id")["tumour_share"].mean().rename("tumour_share_observed")
    truth = patients.merge(observed, left_on="patient_id", right_index=True, how="left")
    write_table(out_dir / "truth.csv", truth)
    write_text(out_dir / "README.md", readme(cfg, per_slide))
    write_table(out_dir / "samples.csv", plan_demo(cfg))
    log.info(
        "demo cohort: %d patients, %d slides, %d RNA samples, %d genes, ~%d/%d tiles at 10x/20x "
        "in %.1f s -> %s",
        len(patients),
        len(per_slide),
        int((patients["rna_sample_id"] != "").sum()),
        len(genes),
        int(per_slide["tiles_10x"].sum()),
        int(per_slide["tiles_20x"].sum()),
        time.perf_counter() - started,
        out_dir,
    )


def readme(cfg: DemoConfig, per_slide: pd.DataFrame) -> str:
    """The cohort's README: what it is, the planted truth, the files and the data sources."""
    return f"""# duopath demo cohort (synthetic)

Generated by `duopath.demo.write_demo` with seed {cfg.seed}: {cfg.n_patients} patients in
{cfg.n_sites} sites, {len(per_slide)} slides at {cfg.mpp} µm/px, {cfg.n_genes} genes. It is
**synthetic**: no patient exists. It exists so that every stage of the pipeline can run on a
laptop in minutes and be checked against a planted ground truth.

## Planted truth

Each patient has a hidden tumour factor `t` and tumour-microenvironment factor `e` (both
standard normal, in `truth.csv`).

- **Histology**: the share of tumour-like tissue on each slide is a logistic function of `t`
  (`tumour_share`, realised per slide in `truth_slides.csv`); tumour texture is darker
  (hyperchromatic) with `t`; stroma holds immune-like cells (small dark round nuclei) at a
  density that grows with `e` (`immune_per_mm2`). Per-pixel truth: `truth_masks/*.png`
  (pyramid level 2, {LABEL_DOWNSAMPLE}x downsampled; 0 glass, 1 stroma, 2 tumour, 3 pen ink).
- **RNA** (`rna_counts.tsv`, negative-binomial raw counts with library-size variation and a
  mild per-site batch effect): genes of the tumour Hallmark sets
  ({", ".join(s.removeprefix("HALLMARK_") for s in TUMOUR_SETS)}) rise with `t`; genes of the
  TME sets ({", ".join(s.removeprefix("HALLMARK_") for s in TME_SETS)}) rise with `e`; other
  genes are noise. Loadings per gene: `truth_genes.csv`. Some patients have no RNA sample
  (empty `rna_sample_id`) on purpose, to exercise missing-modality handling.
- **Outcome**: `linear_predictor = {B_T:g} t {B_E:+g} e` (aggressive tumour worse, immune
  infiltrate better), Weibull survival with independent uniform censoring (months). The
  true linear predictor reaches a C-index of about 0.78 on average, so a correct model should
  be well above 0.5 and below 1. `label` (`low`/`high` grade) thresholds
  `t {GRADE_E_WEIGHT:+g} e + {GRADE_NOISE:g} z` (z standard normal: label noise) at its median;
  `label_probability` in `truth.csv` is the true P(high | t, e), whose AUC (about 0.86) is the
  ceiling a perfect model can reach.

## Files

`samples.csv` (sample sheet), `slides/` (pyramidal JPEG-tiled TIFF, OpenSlide-readable,
mpp in the resolution tags), `rna_counts.tsv`, `truth.csv`, `truth_slides.csv`,
`truth_genes.csv`, `truth_masks/`. Tiles expected at >= 50 % tissue: about
{int(per_slide["tiles_10x"].sum())} at 10x (224 µm) and {int(per_slide["tiles_20x"].sum())} at
20x (112 µm).

## Sources of the real data inside

- H&E texture: patches of `CMU-1-Small-Region.svs`, OpenSlide test data, Carnegie Mellon
  University, released under CC0 1.0.
- Gene symbols and programmes: MSigDB Hallmark collection v2024.1 ({HALLMARK_GMT}),
  CC BY 4.0; Liberzon et al., Cell Systems 2015. Other symbols: GENCODE v31 protein-coding
  genes (open data).
"""
