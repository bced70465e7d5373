"""``gating: validation``: the expert weighting chosen on the validation patients after training.

What must hold: the grid covers each expert alone and the mean; with one informative expert the
chosen weighting leans on it; too few validation patients, an undefined criterion or a tie keep
the mean; the weighting is applied to every sample, stored in the checkpoint (state dict and
metadata) and rebuilt from it; the other gates' models and state dicts are unchanged."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from test_training_trainer import build_cohort, small_cfg, train_files

from duopath.checkpoints import load_model
from duopath.config import BaselinesConfig
from duopath.models.gating import combine_experts, simplex_grid
from duopath.training.gate_fit import MIN_VAL_PATIENTS, choose_gate_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ARCH = BaselinesConfig(dim=8, n_heads=2, n_layers=1, n_gene_tokens=2, gene_hidden=8, dropout=0.0)


def test_simplex_grid_holds_each_expert_alone_and_the_mean() -> None:
    two = simplex_grid(2, 10)
    assert len(two) == 11 and (1.0, 0.0) in two and (0.0, 1.0) in two and (0.5, 0.5) in two
    three = simplex_grid(3, 2)
    assert len(three) == 6 and all(math.isclose(sum(w), 1.0) for w in three)
    with pytest.raises(ValueError):
        simplex_grid(0, 10)


def test_validation_mode_applies_fixed_weights_to_every_sample() -> None:
    a, b = torch.randn(5, 3), torch.randn(5, 3)
    conf = [torch.rand(5), torch.rand(5)]
    gated, w = combine_experts([a, b], conf, "validation", fixed_weights=torch.tensor([0.8, 0.2]))
    torch.testing.assert_close(gated, 0.8 * a + 0.2 * b)
    assert torch.equal(w, torch.tensor([[0.8, 0.2]]).expand(5, 2))
    with pytest.raises(ValueError, match="fixed_weights"):
        combine_experts([a, b], conf, "validation")


def toy_experts(n: int = 40, seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """A classification toy: the 20x expert's logits follow the labels, the 10x one's are noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    informative = 2.0 * (F.one_hot(y, 2).float() - 0.5) + 0.8 * torch.randn(n, 2, generator=g)
    return {"10x": 1.5 * torch.randn(n, 2, generator=g), "20x": informative}, y


def test_one_informative_expert_is_chosen() -> None:
    logits, y = toy_experts()

    def neg_loss(gated: torch.Tensor) -> float:
        return -float(F.cross_entropy(gated, y))

    fit = choose_gate_weights(logits, ["10x", "20x"], neg_loss)
    assert fit["fallback"] is None
    assert fit["weights"]["20x"] >= 0.8 and math.isclose(sum(fit["weights"].values()), 1.0)
    assert fit["score"] > fit["mean_score"]
    swapped = choose_gate_weights({"10x": logits["20x"], "20x": logits["10x"]}, ["10x", "20x"], neg_loss)
    assert swapped["weights"]["10x"] == fit["weights"]["20x"]


def test_mean_is_kept_when_validation_cannot_tell() -> None:
    logits, y = toy_experts(n=MIN_VAL_PATIENTS - 1)
    few = choose_gate_weights(logits, ["10x", "20x"], lambda g: -float(F.cross_entropy(g, y)))
    assert few["weights"] == {"10x": 0.5, "20x": 0.5} and "validation patients" in few["fallback"]
    logits, _ = toy_experts()
    undefined = choose_gate_weights(logits, ["10x", "20x"], lambda g: math.nan)
    assert undefined["weights"] == {"10x": 0.5, "20x": 0.5} and "undefined" in undefined["fallback"]
    tie = choose_gate_weights(logits, ["10x", "20x"], lambda g: 0.7)
    assert tie["weights"] == {"10x": 0.5, "20x": 0.5} and tie["fallback"] is None
    one = choose_gate_weights({"rna": logits["10x"]}, ["rna"], lambda g: 0.7)
    assert one["weights"] == {"rna": 1.0}


def test_set_gate_weights_checks_and_other_gates_keep_their_state_dict() -> None:
    from duopath.models import build_model
    from duopath.models.arch import BaselineArch

    def abmil(gating: str):
        return build_model("abmil", BaselineArch(feature_dim=6, n_classes=2, task="classification",
                                                 n_genes_T=0, n_genes_E=0, dim=8, gating=gating))

    mean, val = abmil("mean"), abmil("validation")
    assert set(val.state_dict()) - set(mean.state_dict()) == {"gate_fixed"}
    assert torch.equal(val.gate_fixed, torch.tensor([0.5, 0.5]))
    val.set_gate_weights([0.3, 0.7])
    assert torch.allclose(val.gate_fixed, torch.tensor([0.3, 0.7]))
    for bad in ([0.6, 0.6], [-0.1, 1.1], [1.0]):
        with pytest.raises(ValueError, match="gate weights"):
            val.set_gate_weights(bad)
    with pytest.raises(ValueError, match="validation"):
        mean.set_gate_weights([0.3, 0.7])


@pytest.fixture(scope="module")
def cohort_10x_only(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """72 patients (12 validation patients a fold): z shows in the 10x tiles, the 20x are noise."""
    return build_cohort(tmp_path_factory.mktemp("cohort10x"), n_patients=72, noise_20x=True)


def test_trained_model_leans_on_the_informative_magnification_and_keeps_it(
    cohort_10x_only: dict, tmp_path: Path
) -> None:
    """A slide-only model whose 20x tiles carry nothing: the validation gate moves to 10x, and
    the checkpoint, the metrics and the predictions all carry the chosen weighting."""
    c = cohort_10x_only
    cfg = small_cfg(epochs=8).model_copy(update={"gating": "validation"})
    metrics = train_files(sheet=c["sheet"], splits=c["splits"], rna=None, features_dir=c["features"],
                          fold=0, model="abmil", cfg=cfg, baselines=ARCH, task="classification",
                          seed=1, out_dir=tmp_path, cohort="synth", progress=False)
    fit = metrics["gate_fit"]
    assert fit["fallback"] is None and fit["criterion"] == "val_loss"
    assert fit["weights"]["10x"] > 0.5  # the mean gate would sit at 0.5
    assert json.loads((tmp_path / "metrics.json").read_text())["gate_fit"]["weights"] == fit["weights"]

    preds = pd.read_parquet(tmp_path / "predictions.parquet")
    assert (preds["gate_10x"] - fit["weights"]["10x"]).abs().max() < 1e-6
    model, meta = load_model(tmp_path / "checkpoint.safetensors", ("baseline",))
    assert meta["gate_fit"]["weights"] == fit["weights"]
    assert torch.allclose(model.gate_fixed, torch.tensor([fit["weights"]["10x"], fit["weights"]["20x"]]))
