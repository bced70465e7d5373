"""Task, Cox, IGC and SKD losses against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from duopath.models.contract import ModelOutput
from duopath.training.losses import (
    assign_bins,
    class_weights,
    cox_partial_nll,
    distillation_kl,
    fit_time_bins,
    igc_diagonal_loss,
    igc_loss,
    igc_spatial_loss,
    pool_to_parent,
    risk_from_hazards,
    skd_loss,
    survival_nll,
    weighted_cross_entropy,
)

LN3 = math.log(3.0)

# Two patients, K = 3 bins.
# A: logits [0, 0, 0] -> h = [.5, .5, .5]; bin 1, EVENT:    -[log h_1 + log S(0)] = 2 ln 2
# B: logits [-ln 3, ln 3, 0] -> h = [.25, .75, .5]; bin 1, CENSORED: -log S(1) = -ln(.75 * .25)
SURV_LOGITS = torch.tensor([[0.0, 0.0, 0.0], [-LN3, LN3, 0.0]])
SURV_BINS = torch.tensor([1, 1])
SURV_EVENTS = torch.tensor([1, 0])
A_TERM = 2 * math.log(2.0)
B_TERM = -math.log(0.75 * 0.25)


def test_survival_nll_hand_case() -> None:
    loss = survival_nll(SURV_LOGITS, SURV_BINS, SURV_EVENTS)
    assert loss.item() == pytest.approx((A_TERM + B_TERM) / 2, abs=1e-6)
    per = survival_nll(SURV_LOGITS, SURV_BINS, SURV_EVENTS, reduction="none")
    torch.testing.assert_close(per, torch.tensor([A_TERM, B_TERM]))


def test_survival_nll_alpha_weights_uncensored_term() -> None:
    # (1-a)*nll + a*event*uncensored: A keeps 2 ln 2, B (censored) is scaled by 0.6
    loss = survival_nll(SURV_LOGITS, SURV_BINS, SURV_EVENTS, alpha=0.4)
    assert loss.item() == pytest.approx((A_TERM + 0.6 * B_TERM) / 2, abs=1e-6)


def test_flipping_censor_convention_changes_loss() -> None:
    right = survival_nll(SURV_LOGITS, SURV_BINS, SURV_EVENTS)
    flipped = survival_nll(SURV_LOGITS, SURV_BINS, 1 - SURV_EVENTS)
    # flipped: A censored -> -ln(.25) = 2 ln 2; B event -> -[ln .75 + ln .75]
    assert flipped.item() == pytest.approx((2 * math.log(2) - 2 * math.log(0.75)) / 2, abs=1e-6)
    assert abs(right.item() - flipped.item()) > 0.5
    with pytest.raises(ValueError, match="events"):
        survival_nll(SURV_LOGITS, SURV_BINS, torch.tensor([2, 0]))


def test_survival_nll_stable_for_extreme_logits() -> None:
    logits = torch.tensor([[60.0, -60.0], [-60.0, 60.0]], requires_grad=True)
    loss = survival_nll(logits, torch.tensor([0, 1]), torch.tensor([1, 0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_time_bins_from_training_uncensored_quartiles() -> None:
    times = [1, 2, 3, 4, 5, 6, 7, 8, 100, 200]
    events = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]  # censored 100/200 must not move the edges
    edges = fit_time_bins(times, events, n_bins=4)
    # np.quantile (linear) of 1..8 at .25/.5/.75 = 2.75, 4.5, 6.25
    np.testing.assert_allclose(edges, [0.0, 2.75, 4.5, 6.25, np.inf])
    np.testing.assert_array_equal(assign_bins([0, 2.74, 2.75, 5, 7, 1e6], edges), [0, 0, 1, 2, 3, 3])
    with pytest.raises(ValueError, match="uncensored"):
        fit_time_bins([1, 2, 3], [1, 1, 0], n_bins=4)
    with pytest.raises(ValueError, match="tied"):
        fit_time_bins([5, 5, 5, 5, 5], [1, 1, 1, 1, 1], n_bins=4)
    with pytest.raises(ValueError, match=">= 0"):
        assign_bins([-1.0], edges)


def test_risk_from_hazards_orders_patients() -> None:
    hazards = torch.tensor([[0.1, 0.1], [0.5, 0.5]])
    # S = [.9, .81] -> -1.71 ; [.5, .25] -> -0.75
    torch.testing.assert_close(risk_from_hazards(hazards), torch.tensor([-1.71, -0.75]))


def test_class_weights_and_weighted_ce() -> None:
    w = class_weights([0, 0, 0, 1], n_classes=2)  # N/(C n_c) = 4/6, 4/2
    torch.testing.assert_close(w, torch.tensor([2 / 3, 2.0]))
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    l0 = -math.log(math.exp(2) / (math.exp(2) + 1))
    l1 = -math.log(math.exp(1) / (math.exp(1) + 1))
    expected = (2 / 3 * l0 + 2.0 * l1) / (2 / 3 + 2.0)
    assert weighted_cross_entropy(logits, labels, w).item() == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="absent"):
        class_weights([0, 0, 2], n_classes=3)


def test_cox_breslow_hand_case() -> None:
    # times 1, 1, 2 ; events 1, 1, 0 ; eta = 0, ln 2, 0 (tie at t=1: one shared risk set)
    eta = torch.tensor([0.0, math.log(2.0), 0.0])
    loss = cox_partial_nll(eta, torch.tensor([1.0, 1.0, 2.0]), torch.tensor([1, 1, 0]))
    # risk set {all}: sum exp = 1 + 2 + 1 = 4 -> ll = (0 - ln 4) + (ln 2 - ln 4)
    expected = -((0 - math.log(4)) + (math.log(2) - math.log(4))) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_cox_gradient_vanishes_at_sksurv_breslow_fit() -> None:
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 1))
    t = np.round(rng.exponential(scale=np.exp(-0.8 * x[:, 0])) * 4) + 1  # many ties
    e = rng.random(40) < 0.8
    fit = CoxPHSurvivalAnalysis(ties="breslow").fit(x, Surv.from_arrays(e, t))
    beta = torch.tensor(fit.coef_, dtype=torch.float64, requires_grad=True)
    loss = cox_partial_nll(torch.as_tensor(x) @ beta, torch.as_tensor(t), torch.as_tensor(e))
    (grad,) = torch.autograd.grad(loss, beta)
    assert abs(grad.item()) < 1e-4
    beta_off = beta.detach() + 0.3
    off = cox_partial_nll(torch.as_tensor(x) @ beta_off, torch.as_tensor(t), torch.as_tensor(e))
    assert off.item() > loss.item()


# ------------------------------------------------------------------------------------ IGC

PARENT = torch.tensor([[0, 0, 1, 1, 2, 2]])  # 3 coarse tiles, 2 fine children each
MASK_C = torch.tensor([[True, True, True]])


def test_pool_to_parent_sums_children_and_drops_padding() -> None:
    fine = torch.tensor([[[0.1, 0.2, 0.3, 0.1, 0.2, 0.1]]])
    parent = torch.tensor([[0, 0, 1, 1, 2, -1]])
    torch.testing.assert_close(pool_to_parent(fine, parent, 3), torch.tensor([[[0.3, 0.4, 0.2]]]))


def test_igc_identical_minimal_disjoint_larger() -> None:
    coarse = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]]])  # Q = 2
    same_fine = torch.tensor([[[0.5, 0.5, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.25, 0.25, 0.3, 0.2]]])
    disjoint_fine = torch.tensor([[[0.0, 0.0, 0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 0.0, 0.0, 0.0, 0.0]]])
    same = igc_diagonal_loss(coarse, same_fine, PARENT, MASK_C, lam=2.0)
    far = igc_diagonal_loss(coarse, disjoint_fine, PARENT, MASK_C, lam=2.0)
    assert same.item() == pytest.approx(0.0, abs=1e-6)
    assert far.item() == pytest.approx(2.0, abs=1e-6)  # cos = 0 for both queries -> λ·1
    js_same = igc_spatial_loss(coarse, same_fine, PARENT, MASK_C)
    js_far = igc_spatial_loss(coarse, disjoint_fine, PARENT, MASK_C)
    assert js_same.item() == pytest.approx(0.0, abs=1e-6)
    assert js_far.item() == pytest.approx(math.log(2), abs=1e-3)
    kl_far = igc_spatial_loss(coarse, disjoint_fine, PARENT, MASK_C, divergence="kl")
    assert kl_far.item() > js_far.item()


def test_igc_diagonal_paper_variance_reference() -> None:
    coarse = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    fine = torch.tensor([[[0.5, 0.5, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.3, 0.3, 0.4, 0.0]]])
    # diag: query 0 cos = 1; query 1: pooled [0, .6, .4] vs [0, 1, 0] -> .6/sqrt(.52)
    c1 = 0.6 / math.sqrt(0.52)
    mean = (1 + c1) / 2
    expected = ((1 - mean) ** 2 + (c1 - mean) ** 2) / 2
    got = igc_diagonal_loss(coarse, fine, PARENT, MASK_C, reference="mean")
    assert got.item() == pytest.approx(expected, abs=1e-6)
    # the literal paper term cannot tell "all consistent" from "all disjoint": both 0
    disjoint = torch.tensor([[[0.0, 0.0, 0.5, 0.5, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0, 0.0, 0.0]]])
    assert igc_diagonal_loss(coarse, disjoint, PARENT, MASK_C, reference="mean").item() == 0.0


def test_igc_ignores_padding() -> None:
    gen = torch.Generator().manual_seed(1)
    coarse = torch.softmax(torch.randn(2, 3, 3, generator=gen), -1)
    fine = torch.softmax(torch.randn(2, 3, 6, generator=gen), -1)
    parent = PARENT.expand(2, -1)
    mask = MASK_C.expand(2, -1)
    # pad: 2 coarse tiles and 3 fine tiles with junk attention (must be ignored)
    coarse_p = torch.cat([coarse, torch.full((2, 3, 2), 0.7)], -1)
    fine_p = torch.cat([fine, torch.full((2, 3, 3), 0.9)], -1)
    parent_p = torch.cat([parent, torch.tensor([[3, 4, -1], [-1, -1, -1]])], -1)
    mask_p = torch.cat([mask, torch.zeros(2, 2, dtype=torch.bool)], -1)
    for fn in (igc_diagonal_loss, igc_spatial_loss):
        base = fn(coarse, fine, parent, mask)
        padded = fn(coarse_p, fine_p, parent_p, mask_p)
        assert base.item() > 0
        assert padded.item() == pytest.approx(base.item(), abs=1e-6)


def test_igc_loss_averages_subspaces_of_a_model_output() -> None:
    coarse = torch.tensor([[[1.0, 0.0, 0.0]]])
    fine_same = torch.tensor([[[0.5, 0.5, 0.0, 0.0, 0.0, 0.0]]])
    fine_far = torch.tensor([[[0.0, 0.0, 0.0, 0.0, 0.5, 0.5]]])
    out = ModelOutput(
        logits=torch.zeros(1, 2),
        logits_by_mag={},
        embeddings={},
        attention={"10x": {"T": coarse, "E": coarse}, "20x": {"T": fine_same, "E": fine_far}},
        confidence={},
        gate_weights=torch.ones(1, 2),
    )
    loss = igc_loss(out, PARENT, {"10x": MASK_C}, kind="diagonal", lam=1.0)
    assert loss.item() == pytest.approx(0.5, abs=1e-6)  # (0 + 1) / 2


# ------------------------------------------------------------------------------------ SKD

# teacher logits [2 ln 3, 0] at T = 2 -> p_t = softmax([ln 3, 0]) = [3/4, 1/4]; student [0, 0]
# KL(p_t || p_s) = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.130812 ; × T² = 0.523248
KD_EXPECTED = 4 * (0.75 * math.log(1.5) + 0.25 * math.log(0.5))


def test_distillation_kl_hand_cases() -> None:
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[2 * LN3, 0.0]])
    assert distillation_kl(s, t, "classification").item() == pytest.approx(KD_EXPECTED, abs=1e-6)
    # survival: one bin, Bernoulli(sigmoid(ln 3) = 3/4) vs Bernoulli(1/2): the same number
    got = distillation_kl(torch.tensor([[0.0]]), torch.tensor([[2 * LN3]]), "survival")
    assert got.item() == pytest.approx(KD_EXPECTED, abs=1e-6)
    assert distillation_kl(t, t, "survival").item() == pytest.approx(0.0, abs=1e-7)


def _out(logits: torch.Tensor, t: list[float], e: list[float]) -> ModelOutput:
    emb = {"20x": {"T": torch.tensor([t]), "E": torch.tensor([e])}}
    return ModelOutput(
        logits=logits,
        logits_by_mag={"20x": logits},
        embeddings=emb,
        attention={},
        confidence={},
        gate_weights=torch.ones(1, 1),
    )


def test_skd_loss_hand_case_and_teacher_detached() -> None:
    s_logits = torch.tensor([[0.0, 0.0]], requires_grad=True)
    t_logits = torch.tensor([[2 * LN3, 0.0]], requires_grad=True)
    student = _out(s_logits, [1.0, 2.0], [0.0, 0.0])
    teacher = _out(t_logits, [0.0, 0.0], [0.0, 2.0])
    res = skd_loss(student, teacher, lambda z: z.sum() * 0 + 1.0, task="classification", alpha=0.5, beta=0.1)
    mse = (1 + 4 + 0 + 4) / 4  # mean over [1, 2, 0, 0] - [0, 0, 0, 2]
    assert res.kl.item() == pytest.approx(KD_EXPECTED, abs=1e-6)
    assert res.mse.item() == pytest.approx(mse, abs=1e-6)
    assert res.total.item() == pytest.approx(1.0 + 0.5 * KD_EXPECTED + 0.1 * mse, abs=1e-6)
    res.total.backward()
    assert s_logits.grad is not None and t_logits.grad is None
