"""Baselines trained under the teacher's protocol (``duopath train --model abmil`` ...).

What must hold: a baseline name maps to the teacher's settings with CGC/IGC off; a cohort
without RNA runs the slide-only baselines (and refuses the RNA ones, naming why); checkpoints
carry their own format (never loadable as a teacher) and rebuild the model with the same
predictions; the RNA-only model writes no magnification gate columns."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_training_trainer import MAGS, build_cohort, small_cfg, train_files

from duopath.checkpoints import CheckpointError, load_model
from duopath.config import BASELINE_MODELS, BaselinesConfig, TeacherConfig
from duopath.layout import FOLD_FILES
from duopath.training.data import DataError
from duopath.training.variants import baseline_names, registry_name, variant_config


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return build_cohort(tmp_path_factory.mktemp("cohort"))


ARCH = BaselinesConfig(dim=8, n_heads=2, n_layers=1, n_gene_tokens=2, gene_hidden=8, dropout=0.0)


def run(cohort: dict, tmp_path: Path, model: str, *, rna: bool = True, task: str = "survival",
        epochs: int = 2) -> dict:
    return train_files(sheet=cohort["sheet"], splits=cohort["splits"], rna=cohort["rna"] if rna else None,
                    features_dir=cohort["features"], fold=1, model=model, cfg=small_cfg(epochs=epochs),
                    baselines=ARCH, tiled_magnifications=MAGS, task=task, seed=3, out_dir=tmp_path,
                    cohort="synth", progress=False)


def test_baseline_names_settings_and_what_the_data_allows() -> None:
    cfg = TeacherConfig()
    for name in BASELINE_MODELS:
        v = variant_config(cfg, name, MAGS)
        assert not v.cgc and v.igc == "none" and not v.rna_mean and v.magnifications == MAGS
        assert registry_name(name) == name
    assert registry_name("teacher_no_cgc") == "teacher"
    run_all, skipped = baseline_names(BaselinesConfig(), has_rna=True)
    assert run_all == list(BASELINE_MODELS) and skipped == {}
    run_wsi, skipped = baseline_names(BaselinesConfig(), has_rna=False)
    assert run_wsi == ["abmil", "transmil"]
    assert set(skipped) == {"snn", "concat", "bilinear", "mcat"} and "no RNA" in skipped["snn"]
    with pytest.raises(ValueError, match="unknown baselines"):
        BaselinesConfig(models=["abmil", "clam"])


def test_slide_only_baseline_without_rna_and_checkpoint_round_trip(cohort: dict, tmp_path: Path) -> None:
    metrics = run(cohort, tmp_path, "abmil", rna=False)
    assert metrics["model"] == "abmil" and "c_harrell" in metrics["test"]
    inner = pd.read_parquet(tmp_path / "inner_predictions.parquet")
    preds = pd.read_parquet(tmp_path / "predictions.parquet")
    everyone = set(inner["patient_id"]) | set(preds["patient_id"])
    assert "P05" in everyone or "P05" not in set(pd.read_csv(cohort["splits"])["patient_id"])  # no RNA needed
    assert {"gate_10x", "gate_20x"} <= set(preds.columns)

    with pytest.raises(CheckpointError, match="a baseline checkpoint, but a teacher checkpoint is needed"):
        load_model(tmp_path / FOLD_FILES["checkpoint"], ("teacher",))
    _, ckpt = load_model(tmp_path / FOLD_FILES["checkpoint"], ("baseline",))
    assert ckpt["model_name"] == "abmil" and ckpt["genes_T"] == []
    assert set(ckpt["model_kwargs"]) >= {"dim", "n_layers", "feature_dim", "magnifications"}


def test_rna_baselines_need_rna(cohort: dict, tmp_path: Path) -> None:
    for model in ("snn", "mcat", "teacher"):
        with pytest.raises(DataError, match="needs RNA"):
            run(cohort, tmp_path / model, model, rna=False)


@pytest.mark.parametrize("model", ["snn", "concat", "bilinear", "mcat", "transmil"])
def test_every_baseline_trains_and_predicts(cohort: dict, tmp_path: Path, model: str) -> None:
    task = "classification" if model in ("snn", "bilinear") else "survival"
    metrics = run(cohort, tmp_path, model, task=task, epochs=1)
    assert metrics["model"] == model and metrics["task"] == task
    preds = pd.read_parquet(tmp_path / "predictions.parquet")
    gates = [c for c in preds.columns if c.startswith("gate_")]
    assert gates == ([] if model == "snn" else ["gate_10x", "gate_20x"])
    log = pd.read_csv(tmp_path / "train_log.csv")
    assert log["train_igc_loss"].eq(0).all() and log["cgc_projected_rows"].isna().all()
    assert json.loads((tmp_path / "metrics.json").read_text())["test"]


def test_snn_ignores_slides(cohort: dict, tmp_path: Path) -> None:
    """The RNA-only model's predictions do not depend on the tiles (same genes, other tiles)."""
    run(cohort, tmp_path, "snn", epochs=1)
    model, _ = load_model(tmp_path / FOLD_FILES["checkpoint"], ("baseline",))
    genes_t, genes_e = torch.randn(2, 6), torch.randn(2, 5)
    outs = []
    for n in (3, 9):
        feats = {m: torch.randn(2, n, model.feature_dim) for m in MAGS} if hasattr(model, "feature_dim") \
            else {m: torch.randn(2, n, 8) for m in MAGS}
        mask = {m: torch.ones(2, n, dtype=torch.bool) for m in MAGS}
        coords = {m: torch.rand(2, n, 2) * 100 for m in MAGS}
        outs.append(model(feats, mask, coords, genes_t, genes_e).logits)
    torch.testing.assert_close(outs[0], outs[1])
