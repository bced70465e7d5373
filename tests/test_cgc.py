"""CGC: hand-computed projections, the no-conflict case, orthogonality, confidence choice."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from duopath.training.cgc import coordinate_gradients, coordinate_head_gradients
from duopath.training.losses import survival_nll


def _head(weight: list[list[float]], grad: list[list[float]]) -> nn.Linear:
    head = nn.Linear(len(weight[0]), len(weight), bias=True)
    with torch.no_grad():
        head.weight.copy_(torch.tensor(weight))
        head.bias.zero_()
    head.weight.grad = torch.tensor(grad)
    head.bias.grad = torch.tensor([7.0, 8.0])
    return head


# d = 2, C = 2, one sample with label 0.
# W_T = [[2, 0], [0, 0]], W_E = 0;  X^T = [1, 0], X^E = [0, 1]
# z_T = [2, 0] -> S_T = e^2 / (e^2 + 1) = 0.880797;  z_E = [0, 0] -> S_E = 0.5  => T more confident.
# grads: row 0: g_T = [1, 0], g_E = [-1, 1]  (cos = -1/sqrt(2) < 0: conflict)
#        row 1: g_T = [1, 1], g_E = [ 2, 0]  (cos = 2/(sqrt(2)*2) > 0: untouched)
# row 0: g_E <- g_E - (g_E.g_T / |g_T|^2) g_T = [-1, 1] - (-1/1) [1, 0] = [0, 1]
W = [[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
G = [[1.0, 0.0, -1.0, 1.0], [1.0, 1.0, 2.0, 0.0]]
EMB = {"T": torch.tensor([[1.0, 0.0]]), "E": torch.tensor([[0.0, 1.0]])}
Y = torch.tensor([0])


def test_hand_example_projects_less_confident_half_once() -> None:
    head = _head(W, G)
    report = coordinate_head_gradients(head, EMB, Y, task="classification")
    assert report.confidence["T"] == pytest.approx(math.exp(2) / (math.exp(2) + 1), abs=1e-6)
    assert report.confidence["E"] == pytest.approx(0.5, abs=1e-6)
    assert report.projected_subspace == "E"
    assert report.projected_rows.tolist() == [True, False]
    assert report.cosine[0].item() == pytest.approx(-1 / math.sqrt(2), abs=1e-6)
    expected = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 2.0, 0.0]])
    torch.testing.assert_close(head.weight.grad, expected)
    # The reference's double subtraction would give [1, 1] for row 0's E half.
    assert head.weight.grad[0, 2:].tolist() != [1.0, 1.0]
    torch.testing.assert_close(head.bias.grad, torch.tensor([7.0, 8.0]))


def test_hand_example_when_e_is_more_confident() -> None:
    # Swap the confident half: W_E = [[2, 0], [0, 0]] with X^E = [1, 0]; W_T = 0.
    head = _head([[0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]], G)
    emb = {"T": torch.tensor([[0.0, 1.0]]), "E": torch.tensor([[1.0, 0.0]])}
    report = coordinate_head_gradients(head, emb, Y, task="classification")
    assert report.projected_subspace == "T"
    # g_T <- [1, 0] - ([1,0].[-1,1] / 2) [-1, 1] = [1, 0] + 0.5 [-1, 1] = [0.5, 0.5]
    torch.testing.assert_close(head.weight.grad[0], torch.tensor([0.5, 0.5, -1.0, 1.0]))
    torch.testing.assert_close(head.weight.grad[1], torch.tensor([1.0, 1.0, 2.0, 0.0]))


def test_no_change_without_conflict() -> None:
    grad = [[1.0, 2.0, 0.5, 0.1], [0.0, 0.0, 3.0, -1.0]]  # cos > 0 and a zero g_T
    head = _head(W, grad)
    report = coordinate_head_gradients(head, EMB, Y, task="classification")
    assert not report.projected_rows.any()
    torch.testing.assert_close(head.weight.grad, torch.tensor(grad))


def test_random_conflicts_orthogonal_and_confident_half_untouched() -> None:
    gen = torch.Generator().manual_seed(0)
    d, c, b = 6, 5, 8
    head = nn.Linear(2 * d, c)
    emb = {"T": torch.randn(b, d, generator=gen), "E": torch.randn(b, d, generator=gen)}
    y = torch.randint(0, c, (b,), generator=gen)
    head.weight.grad = torch.randn(c, 2 * d, generator=gen)
    before = head.weight.grad.clone()
    report = coordinate_head_gradients(head, emb, y, task="classification")
    assert report.projected_rows.any() and not report.projected_rows.all()
    more = "T" if report.projected_subspace == "E" else "E"
    sl = {"T": slice(0, d), "E": slice(d, 2 * d)}
    after = head.weight.grad
    torch.testing.assert_close(after[:, sl[more]], before[:, sl[more]])
    less = report.projected_subspace
    rows = report.projected_rows
    dots = (after[rows][:, sl[less]] * after[rows][:, sl[more]]).sum(1)
    torch.testing.assert_close(dots, torch.zeros_like(dots), atol=1e-5, rtol=0)
    torch.testing.assert_close(after[~rows], before[~rows])


def test_survival_confidence_counts_censored_by_survival_probability() -> None:
    # K = 2 bins; W_T = I, W_E = 0; X^T = [0, 0] -> h = 0.5 per bin; X^E irrelevant (z_E = 0).
    head = _head([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]], G)
    emb = {"T": torch.tensor([[0.0, 0.0], [3.0, -3.0]]), "E": torch.zeros(2, 2)}
    bins, events = torch.tensor([0, 1]), torch.tensor([1, 0])
    report = coordinate_head_gradients(head, emb, bins, task="survival", events=events)
    # T: patient 0 event in bin 0: h_0 = 0.5; patient 1 censored in bin 1:
    #    S(1) = (1 - sigmoid(3)) (1 - sigmoid(-3)) = sigmoid(-3) sigmoid(3)
    s = 1 / (1 + math.exp(3))
    expected_t = 0.5 + s * (1 - s)
    assert report.confidence["T"] == pytest.approx(expected_t, abs=1e-6)
    assert report.confidence["E"] == pytest.approx(0.5 + 0.25, abs=1e-6)  # 0.5, then 0.5*0.5
    nll = survival_nll(torch.tensor([[0.0, 0.0], [3.0, -3.0]]), bins, events, reduction="none")
    assert report.confidence["T"] == pytest.approx(float(torch.exp(-nll).sum()), abs=1e-6)
    assert report.projected_subspace == "T"  # 0.545 < 0.75


def test_requires_backward_first_and_runs_per_magnification() -> None:
    head = nn.Linear(4, 2)
    with pytest.raises(RuntimeError, match="backward"):
        coordinate_head_gradients(head, EMB, Y, task="classification")

    from duopath.models.contract import ModelOutput

    heads = {"10x": nn.Linear(4, 2), "20x": nn.Linear(4, 2)}
    emb = {m: {"T": torch.randn(3, 2), "E": torch.randn(3, 2)} for m in heads}
    out = ModelOutput(
        logits=torch.zeros(3, 2),
        logits_by_mag={m: heads[m](torch.cat([emb[m]["T"], emb[m]["E"]], -1)) for m in heads},
        embeddings=emb,
        attention={},
        confidence={},
        gate_weights=torch.zeros(3, 2),
    )
    y = torch.tensor([0, 1, 1])
    loss = sum(nn.functional.cross_entropy(out.logits_by_mag[m], y) for m in heads)
    loss.backward()
    reports = coordinate_gradients(heads, out, y, task="classification")
    assert set(reports) == {"10x", "20x"}
