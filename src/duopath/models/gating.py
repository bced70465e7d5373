"""Dual-magnification gating: combine the per-magnification experts per sample.

Confidence of an expert (what ``max_confidence`` and ``softmax`` gating compare):

* classification: the maximum softmax probability;
* survival: the maximum of the predicted outcome distribution over the K+1 discrete outcomes
  "event in bin k" (p_k = h_k·S(k-1), k < K) and "no event through the last bin"
  (p_K = S(K-1)), with hazards h = sigmoid(logits) and S = cumprod(1 - h). This is the
  survival analogue of the max softmax probability: how peaked the expert's belief about the
  patient's outcome is. (A max over raw hazards would not be a distribution and would favour
  whichever expert predicts higher hazards, i.e. higher risk, not higher certainty.)

``validation`` is not a per-sample gate: one convex weighting of the experts, the same for every
patient, chosen after training on the inner validation patients (``training.gate_fit``) and
stored with the weights (the model's ``gate_fixed`` buffer); until it is chosen it is the mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from duopath.layout import TASKS

GatingMode = Literal["max_confidence", "mean", "softmax", "validation"]
GATING_MODES: tuple[str, ...] = ("max_confidence", "mean", "softmax", "validation")


def survival_outcome_probs(logits: Tensor) -> Tensor:
    """[B, K] hazard logits → [B, K+1] outcome distribution (computed in log space)."""
    log_h = F.logsigmoid(logits)
    log_s = torch.cumsum(F.logsigmoid(-logits), dim=-1)  # log S(k) = Σ_{j<=k} log(1-h_j)
    log_s_prev = F.pad(log_s[..., :-1], (1, 0))  # log S(k-1), S(-1) = 1
    return torch.cat([log_h + log_s_prev, log_s[..., -1:]], dim=-1).exp()


def expert_confidence(logits: Tensor, task: str) -> Tensor:
    """[B, C] logits → [B] confidence (see module docstring)."""
    if task == "classification":
        return torch.softmax(logits, dim=-1).amax(dim=-1)
    if task == "survival":
        return survival_outcome_probs(logits).amax(dim=-1)
    raise ValueError(f"task must be 'survival' or 'classification', got {task!r}")


def combine_experts(
    logits: Sequence[Tensor],
    confidence: Sequence[Tensor],
    mode: str = "max_confidence",
    temperature: float = 1.0,
    fixed_weights: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Gate M experts' [B, C] logits into one [B, C].

    Modes:
        ``max_confidence`` (default, DESIGN.md): per sample, the most confident expert's
        logits (ties → the first magnification in model order).
        ``mean``: the arithmetic mean of logits (for classification the normalised geometric
        mean of the experts' probabilities; for survival the mean hazard logit per bin).
        ``softmax``: logits weighted by softmax(confidence / temperature) over experts.
        ``validation``: logits weighted by ``fixed_weights`` [M] (non-negative, summing to 1),
        the same for every sample: the weighting chosen on the validation patients.

    Returns:
        The gated logits [B, C] and the weights [B, M] (rows sum to 1).
    """
    if not logits or len(logits) != len(confidence):
        raise ValueError("need one confidence per expert and at least one expert")
    stacked = torch.stack(list(logits), dim=1)  # [B, M, C]
    conf = torch.stack(list(confidence), dim=1)  # [B, M]
    if mode == "max_confidence":
        pick = conf.argmax(dim=1)
        weights = F.one_hot(pick, conf.shape[1]).to(stacked.dtype)
        chosen = stacked.gather(1, pick.view(-1, 1, 1).expand(-1, 1, stacked.shape[-1]))
        return chosen.squeeze(1), weights
    elif mode == "mean":
        weights = torch.full_like(conf, 1.0 / conf.shape[1])
    elif mode == "softmax":
        if temperature <= 0:
            raise ValueError(f"gating temperature must be > 0, got {temperature}")
        weights = torch.softmax(conf / temperature, dim=1)
    elif mode == "validation":
        if fixed_weights is None or fixed_weights.shape != (conf.shape[1],):
            got = None if fixed_weights is None else tuple(fixed_weights.shape)
            raise ValueError(f"validation gating needs fixed_weights of shape ({conf.shape[1]},), got {got}")
        weights = fixed_weights.to(stacked.dtype).expand(conf.shape[0], -1)
    else:
        raise ValueError(f"gating must be one of {GATING_MODES}, got {mode!r}")
    return (weights.unsqueeze(-1) * stacked).sum(dim=1), weights


def check_head_args(task: str, gating: str, magnifications: Sequence[str], n_classes: int) -> tuple[str, ...]:
    """Validate what every model's experts and gate share; returns the magnifications as a tuple.

    One place for the checks the teacher, the student and the baselines all need, so a bad
    value is refused with the same message whichever model is built.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if gating not in GATING_MODES:
        raise ValueError(f"gating must be one of {GATING_MODES}, got {gating!r}")
    mags = tuple(magnifications)
    if not mags or len(set(mags)) != len(mags):
        raise ValueError(f"magnifications must be non-empty and unique, got {mags}")
    if n_classes < 1 or (task == "classification" and n_classes < 2):
        raise ValueError(f"n_classes={n_classes} is invalid for task {task!r}")
    return mags


def gate_experts(
    logits_by_expert: Mapping[str, Tensor],
    order: Sequence[str],
    task: str,
    mode: str,
    temperature: float = 1.0,
    fixed_weights: Tensor | None = None,
) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    """Confidence of each expert (in ``order``) and the gated logits and weights.

    Returns ``(confidence by expert, logits [B, C], weights [B, M])``: the tail every model's
    forward shares (teacher, student, baselines).
    """
    confidence = {k: expert_confidence(logits_by_expert[k], task) for k in order}
    logits, weights = combine_experts([logits_by_expert[k] for k in order],
                                      [confidence[k] for k in order], mode, temperature,
                                      fixed_weights)
    return confidence, logits, weights


def simplex_grid(n_experts: int, steps: int) -> list[tuple[float, ...]]:
    """Every convex weighting of ``n_experts`` experts on a grid of ``1/steps`` (each expert
    alone, the mean when ``steps`` is a multiple of ``n_experts``, and what lies between)."""
    if n_experts < 1 or steps < 1:
        raise ValueError(f"need n_experts >= 1 and steps >= 1, got {n_experts}, {steps}")

    def parts(n: int, total: int) -> list[tuple[int, ...]]:
        if n == 1:
            return [(total,)]
        return [(k, *rest) for k in range(total, -1, -1) for rest in parts(n - 1, total - k)]

    return [tuple(k / steps for k in p) for p in parts(n_experts, steps)]
