"""The demo cohort's RNA through ``build_rna`` and through the ``rna`` Snakemake rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from duopath.cohort import canonicalise_sheet
from duopath.config import CohortConfig, DemoConfig, RnaConfig
from duopath.demo.rna import gene_truth, simulate_counts
from duopath.demo.truth import plan_demo, simulate_patients
from duopath.rna.build import build_rna

REPO = Path(__file__).resolve().parents[1]


def write_demo_rna(tmp_path: Path, cfg: DemoConfig) -> tuple[Path, Path]:
    """The demo's rna_counts.tsv (as the demo writes it) and its canonical sample sheet."""
    patients = simulate_patients(cfg)
    counts = tmp_path / "demo" / "rna_counts.tsv"
    counts.parent.mkdir(parents=True)
    simulate_counts(cfg, patients, gene_truth(cfg)).to_csv(counts, sep="\t", index=False)
    sheet = canonicalise_sheet(plan_demo(cfg).astype(str), CohortConfig(demo=cfg),
                               source="demo/samples.csv", slide_dir=None, check_files=False)
    sheet_path = tmp_path / "out" / "cohorts" / "demo" / "samples.csv"
    sheet_path.parent.mkdir(parents=True)
    sheet.to_csv(sheet_path, index=False)
    return counts, sheet_path


def test_demo_rna_recovers_the_planted_factors(tmp_path: Path) -> None:
    cfg = DemoConfig(n_patients=30, n_genes=1200)
    counts, sheet = write_demo_rna(tmp_path, cfg)
    adata = build_rna(counts, sheet, RnaConfig(), tmp_path / "demo.h5ad")
    truth = simulate_patients(cfg).set_index("patient_id")
    without = truth.index[truth["rna_sample_id"] == ""].tolist()
    assert sorted(adata.uns["patients_without_rna"]) == sorted(without)
    assert adata.n_obs == cfg.n_patients - len(without)
    assert adata.uns["provenance"]["orientation"].startswith("genes × samples")
    truth = truth.loc[adata.obs_names]
    scores = adata.obsm["group_scores"]
    assert np.corrcoef(scores["T"], truth["tumour_factor"])[0, 1] > 0.8
    assert np.corrcoef(scores["E"], truth["tme_factor"])[0, 1] > 0.8
    assert adata.var["group_T"].sum() > 20 and adata.var["group_E"].sum() > 20
