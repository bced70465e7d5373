"""``gating: validation``: one convex weighting of the experts, chosen on the validation patients.

Why post hoc on the validation split, and not a gate learned with the weights:

* every model here trains each expert on its OWN task loss (``objectives.teacher_step`` sums the
  per-magnification losses; the students' SKD is per expert too), so the gate never enters the
  training loss: a learned gate would need an objective of its own;
* on the training patients that objective would favour whichever expert fits the training
  patients best, i.e. overfits most, not the one that generalises; the inner validation
  patients are the only data the fold has that the experts did not train on (the same patients
  that already pick the epoch; the test fold is never read);
* one weight on a grid of 1/10 steps (for two experts: 11 values, from "10x only" through the
  mean to "20x only") is a tiny hypothesis space, so a validation split of ~20 patients can
  choose in it without the chosen value being mostly noise, and ties go to the weighting
  nearest the mean (the fallback when the validation split cannot tell).

The criterion follows ``optim.select_on``: the validation task loss of the gated logits (a
proper scoring rule, smooth in the weight) or the validation metric (C-index / AUC). With fewer
than :data:`MIN_VAL_PATIENTS` validation patients, or a criterion undefined for every weighting
(e.g. no events), the gate stays the mean, and the log says why.

During training the gate is the mean (the model's ``gate_fixed`` buffer starts uniform), so the
epoch is selected on the mean-gated validation loss; the weighting is then chosen for the
selected weights and written into the buffer, which the checkpoint stores.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from duopath.models.gating import simplex_grid

__all__ = ["GRID_STEPS", "MIN_VAL_PATIENTS", "choose_gate_weights", "fit_validation_gate"]

log = logging.getLogger(__name__)

GRID_STEPS = 10
"""Weights on a grid of 1/GRID_STEPS (module docstring: why a coarse grid)."""
MIN_VAL_PATIENTS = 10
"""Below this many validation patients the weighting is not chosen: the mean is kept."""
TIE_TOLERANCE = 1e-9
"""Scores this close count as a tie (then the weighting nearest the mean wins)."""


def choose_gate_weights(
    logits_by_expert: Mapping[str, Tensor],
    order: Sequence[str],
    score: Callable[[Tensor], float],
    *,
    steps: int = GRID_STEPS,
    min_patients: int = MIN_VAL_PATIENTS,
) -> dict:
    """The grid weighting of the experts' [N, C] logits (in ``order``) with the best ``score``
    (higher is better, a function of the gated [N, C] logits), ties to the one nearest the mean.

    Returns ``{"weights": {expert: w}, "score", "mean_score", "fallback"}``: the chosen and the
    mean weighting's score (for ``val_loss`` the negated loss), and ``fallback``, None when the
    weighting was chosen, else the reason the mean was kept (the scores are then NaN).
    """
    order = list(order)
    m = len(order)
    mean = tuple(1.0 / m for _ in order)
    n = int(logits_by_expert[order[0]].shape[0]) if order else 0

    def result(weights: Sequence[float], best: float, mean_score: float, fallback: str | None) -> dict:
        return {"weights": {k: float(w) for k, w in zip(order, weights, strict=True)},
                "score": best, "mean_score": mean_score, "fallback": fallback}

    if m < 2:
        return result(mean, math.nan, math.nan, "one expert: nothing to weigh")
    if n < min_patients:
        return result(mean, math.nan, math.nan,
                      f"{n} validation patients (< {min_patients}): the mean is kept")
    stacked = torch.stack([logits_by_expert[k].float() for k in order], dim=1)  # [N, M, C]
    candidates = simplex_grid(m, steps)
    if not any(_same(c, mean) for c in candidates):
        candidates.append(mean)
    scores = []
    for w in candidates:
        s = float(score((torch.tensor(w, dtype=stacked.dtype)[None, :, None] * stacked).sum(dim=1)))
        scores.append(s if math.isfinite(s) else -math.inf)
    mean_score = next(s for c, s in zip(candidates, scores, strict=True) if _same(c, mean))
    best = max(scores)
    if best == -math.inf:
        return result(mean, math.nan, math.nan,
                      "the validation criterion is undefined for every weighting: the mean is kept")
    tied = [c for c, s in zip(candidates, scores, strict=True) if s >= best - TIE_TOLERANCE]
    pick = min(tied, key=lambda c: sum((a - b) ** 2 for a, b in zip(c, mean, strict=True)))
    return result(pick, best, mean_score, None)


def fit_validation_gate(
    model: nn.Module,
    logits_by_expert: Mapping[str, Tensor],
    score: Callable[[Tensor], float],
    *,
    criterion: str,
    desc: str,
) -> dict:
    """Choose the weighting (:func:`choose_gate_weights`), set it on ``model`` (its
    ``set_gate_weights``), log it; returns the record the fold's metrics and checkpoint keep."""
    fit = choose_gate_weights(logits_by_expert, model.expert_names, score)
    model.set_gate_weights([fit["weights"][k] for k in model.expert_names])
    weights = ", ".join(f"{k} {w:.2f}" for k, w in fit["weights"].items())
    if fit["fallback"] is not None:
        log.info("%s: validation gate: %s (%s)", desc, weights, fit["fallback"])
    else:
        log.info("%s: validation gate chosen on %s: %s (score %.4f; mean gate %.4f)", desc, criterion,
                 weights, fit["score"], fit["mean_score"])
    return {**fit, "criterion": criterion}


def _same(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(abs(x - y) < 1e-12 for x, y in zip(a, b, strict=True))
