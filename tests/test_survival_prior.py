"""Every discrete-time survival head starts at the fold's TRAINING Kaplan–Meier.

What must hold: the per-bin hazards multiply back to the training Kaplan–Meier at the bin edges
(the last, open bin ending at the longest training follow-up); an UNTRAINED model of every
family (teacher, student, each baseline) predicts exactly that curve for every patient, whatever
its inputs; the prior is data of the fold (set by ``training.architectures``, stored in the
checkpoint's architecture JSON with the head's weights); classification heads are untouched.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from duopath.checkpoints import load_model, save_checkpoint
from duopath.config import BaselinesConfig, StudentConfig, TeacherConfig
from duopath.evaluation.calibration import km_bin_hazards, km_survival
from duopath.models import BASELINES, build_model
from duopath.models.arch import TeacherArch
from duopath.training.architectures import baseline_arch, student_arch, survival_prior, teacher_arch

MAGS = ("10x", "20x")
D, B = 8, 5
RNG = np.random.default_rng(7)
TIMES = np.round(RNG.exponential(40.0, 80), 1) + 0.5
EVENTS = (RNG.random(80) < 0.6).astype(int)
EVENTS[np.argmax(TIMES)] = 0  # follow-up ends censored, as in a real cohort (KM stays above 0)
EDGES = np.array([0.0, 12.0, 30.0, 60.0, np.inf])


def km_by_hand(times: np.ndarray, events: np.ndarray, t: float) -> float:
    """Product-limit estimate at ``t`` written out (independent of the code under test)."""
    s = 1.0
    for u in np.unique(times[(events == 1) & (times <= t)]):
        s *= 1.0 - np.sum((times == u) & (events == 1)) / np.sum(times >= u)
    return s


def fold(task: str = "survival") -> SimpleNamespace:
    """The parts of a ``FoldData`` the architectures read, with real training outcomes."""
    genes = SimpleNamespace(genes_T=["a", "b", "c"], genes_E=["d", "e"],
                            train_mean_T=np.zeros(3), train_mean_E=np.zeros(2))
    train = [SimpleNamespace(time=float(t), event=float(e)) for t, e in zip(TIMES, EVENTS, strict=True)]
    return SimpleNamespace(task=task, fold=0, n_classes=4 if task == "survival" else 2, genes=genes,
                           time_bins=EDGES if task == "survival" else None, samples={"train": train})


def inputs(seed: int) -> dict:
    """Random tiles (every slot real) and genes: the untrained prior must not depend on them."""
    g = torch.Generator().manual_seed(seed)
    feats = {m: torch.randn(B, n, D, generator=g) for m, n in (("10x", 4), ("20x", 16))}
    mask = {m: torch.ones(B, f.shape[1], dtype=torch.bool) for m, f in feats.items()}
    coords = {m: torch.stack(torch.meshgrid(torch.arange(int(f.shape[1] ** 0.5)),
                                            torch.arange(int(f.shape[1] ** 0.5)), indexing="ij"), -1)
              .reshape(1, -1, 2).float().expand(B, -1, -1) * (448.0 if m == "10x" else 224.0)
              for m, f in feats.items()}
    return {"feats": feats, "mask": mask, "coords": coords,
            "genes_T": torch.randn(B, 3, generator=g), "genes_E": torch.randn(B, 2, generator=g)}


def test_bin_hazards_multiply_back_to_the_training_kaplan_meier() -> None:
    h = km_bin_hazards(TIMES, EVENTS, EDGES)
    ends = [12.0, 30.0, 60.0, float(TIMES.max())]
    assert h.shape == (4,) and ((h > 0) & (h < 1)).all()
    np.testing.assert_allclose(np.cumprod(1 - h), [km_by_hand(TIMES, EVENTS, t) for t in ends], atol=1e-9)
    # a bin without events and a curve that reaches 0 still give finite logits
    h = km_bin_hazards([1.0, 2.0, 50.0], [1, 1, 0], [0.0, 1.5, 10.0, np.inf])
    np.testing.assert_allclose(h, [1 / 3, 1 / 2, 1e-4])  # the last bin holds no event
    h = km_bin_hazards([1.0, 2.0], [1, 1], [0.0, 1.5, np.inf])  # S reaches 0 in the last bin
    np.testing.assert_allclose(h, [0.5, 1 - 1e-4])
    assert np.isfinite(np.log(h) - np.log1p(-h)).all()


def untrained(name: str, task: str = "survival") -> torch.nn.Module:
    cfg = TeacherConfig(dim=8, n_heads=2, gene_hidden=8, n_gene_tokens=2, attention="cross",
                        magnifications=list(MAGS))
    data = fold(task)
    if name == "teacher":
        arch = teacher_arch(cfg, data, D)
    elif name == "student":
        arch = student_arch(StudentConfig(n_neighbours=3, dpc_k=2), data, D, MAGS, teacher_dim=8)
    else:
        arch = baseline_arch(BaselinesConfig(dim=8, gene_hidden=8, n_layers=1), cfg, data, D)
    torch.manual_seed(0)
    return build_model(name, arch).eval()


@pytest.mark.parametrize("name", ["teacher", "student", *BASELINES])
def test_an_untrained_model_predicts_the_training_kaplan_meier(name: str) -> None:
    model = untrained(name)
    x = inputs(1)
    args = (x["feats"], x["mask"], x["coords"]) + (() if name == "student" else (x["genes_T"], x["genes_E"]))
    with torch.no_grad():
        out = model(*args)
    surv = torch.cumprod(1 - torch.sigmoid(out.logits), -1).numpy()
    km = km_survival(TIMES, EVENTS, [12.0, 30.0, 60.0, float(TIMES.max())], 1)[0]
    np.testing.assert_allclose(surv, np.tile(km, (B, 1)), atol=1e-3)
    for logits in out.logits_by_mag.values():  # every expert, not only the gated output
        np.testing.assert_allclose(torch.cumprod(1 - torch.sigmoid(logits), -1).numpy(),
                                   np.tile(km, (B, 1)), atol=1e-3)


def test_classification_heads_keep_the_default_init() -> None:
    assert survival_prior(fold("classification")) is None
    model = untrained("snn", task="classification")
    assert model.arch.survival_prior is None and model.heads["rna"].weight.abs().sum() > 0
    with pytest.raises(ValueError, match="survival_prior needs task 'survival'"):
        TeacherArch(feature_dim=8, n_classes=2, n_genes_T=3, n_genes_E=2, task="classification",
                    survival_prior=(0.0, 0.0))
    with pytest.raises(ValueError, match="4 bins"):
        TeacherArch(feature_dim=8, n_classes=4, n_genes_T=3, n_genes_E=2, survival_prior=(0.0,))


def test_the_prior_travels_with_the_checkpoint(tmp_path: Path) -> None:
    model = untrained("snn")
    prior = model.arch.survival_prior
    assert prior is not None and len(prior) == 4
    path = tmp_path / "snn.safetensors"
    save_checkpoint(path, "baseline", model, {"model_name": "snn", "model_kwargs": model.arch.to_json()})
    rebuilt, meta = load_model(path, ("baseline",))
    assert rebuilt.arch.survival_prior == prior and meta["model_kwargs"]["survival_prior"] == list(prior)
    assert torch.equal(rebuilt.heads["rna"].bias, model.heads["rna"].bias)
