"""Confidence-guided gradient coordination (CGC) on the teacher's head.

Call after ``loss.backward()`` and before ``optimizer.step()``. The head W [C, 2d] acts on
[X_R^T ; X_R^E]; its columns split into a T half W[:, :d] and an E half W[:, d:]. Per row c,
g_T = ∂L/∂W[c, :d] and g_E = ∂L/∂W[c, d:]. If cos(g_T, g_E) < 0 the two subspaces pull that
row in conflicting directions; the LESS confident subspace's gradient g is replaced by its
projection onto the orthogonal complement of the more confident one's h:

    g ← g − (g·h / ‖h‖²) h        (once)

so it keeps only the part that does not fight h. The reference code subtracts the projection
twice and then rescales — that reflects g to the other side of h instead of removing the
conflict (DESIGN.md, "Known defects"); not done here.

Confidence S_s (one scalar per subspace per batch): the batch-summed probability of the true
outcome under that subspace's SUB-logits z_s = X_R^s · W_sᵀ (its half of W, no bias).
* classification: softmax(z_s)[y];
* survival: the likelihood of what was observed under the sub-model's hazards, i.e.
  exp(-NLL term): for an event in bin y, h_y·S(y-1) (the probability of the true time bin);
  for a patient CENSORED in bin y, S(y) — the true bin is unknown, only that the patient
  outlived bin y, and S(y) is the probability the sub-model gives to exactly that. Censored
  patients therefore count, with the same term the survival NLL uses.
Ties (S_T == S_E) treat T as the more confident subspace, deterministically.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from duopath.models.contract import SUBSPACES, ModelOutput
from duopath.training.losses import survival_nll


@dataclass
class CGCReport:
    """What CGC did to one head.

    ``projected_rows`` [C] bool: rows whose less-confident half was projected;
    ``projected_subspace``: "T" or "E" (the less confident one); ``confidence``: S_T, S_E;
    ``cosine`` [C]: cos(g_T, g_E) per row before projection (0 where a gradient is zero).
    """

    projected_rows: Tensor
    projected_subspace: str
    confidence: dict[str, float]
    cosine: Tensor


@torch.no_grad()
def subspace_confidence(
    head: nn.Linear,
    embeddings: Mapping[str, Tensor],
    targets: Tensor,
    *,
    task: str,
    events: Tensor | None = None,
) -> dict[str, Tensor]:
    """S_s for s in (T, E), each a 0-d tensor (see module docstring)."""
    w = head.weight
    d = w.shape[1] // 2
    halves = {"T": w[:, :d], "E": w[:, d:]}
    conf: dict[str, Tensor] = {}
    for s in SUBSPACES:
        z = embeddings[s].detach().to(w.dtype) @ halves[s].T
        if task == "classification":
            p = torch.softmax(z, dim=-1).gather(1, targets.long().view(-1, 1)).squeeze(1)
        elif task == "survival":
            if events is None:
                raise ValueError("survival CGC needs the event flags")
            p = torch.exp(-survival_nll(z, targets, events, reduction="none"))
        else:
            raise ValueError(f"task must be 'survival' or 'classification', got {task!r}")
        conf[s] = p.sum()
    return conf


@torch.no_grad()
def coordinate_head_gradients(
    head: nn.Linear,
    embeddings: Mapping[str, Tensor],
    targets: Tensor,
    *,
    task: str,
    events: Tensor | None = None,
) -> CGCReport:
    """Apply CGC in place to ``head.weight.grad`` (bias untouched).

    Args:
        head: Linear(2d → C) whose input is [X^T ; X^E].
        embeddings: {"T": [B, d], "E": [B, d]} as fed to the head in this step.
        targets: [B] class labels, or survival time bins.
        task: "classification" | "survival"; events: [B] 0/1 (survival only).
    """
    grad = head.weight.grad
    if grad is None:
        raise RuntimeError("head.weight.grad is None: call CGC after loss.backward()")
    if head.weight.shape[1] % 2:
        raise ValueError("the head's input width must be 2d ([X^T ; X^E])")
    conf = subspace_confidence(head, embeddings, targets, task=task, events=events)
    d = grad.shape[1] // 2
    g = {"T": grad[:, :d], "E": grad[:, d:]}
    more, less = ("T", "E") if bool(conf["T"] >= conf["E"]) else ("E", "T")
    h, gl = g[more], g[less]
    h_sq = h.square().sum(dim=1)
    norms = h_sq.sqrt() * gl.norm(dim=1)
    dot = (gl * h).sum(dim=1)
    cosine = torch.where(norms > 0, dot / norms.clamp(min=1e-30), torch.zeros_like(dot))
    conflict = cosine < 0
    coef = torch.where(conflict, dot / h_sq.clamp(min=1e-30), torch.zeros_like(dot))
    gl.sub_(coef.unsqueeze(1) * h)  # a view into head.weight.grad: edits it in place
    return CGCReport(
        projected_rows=conflict,
        projected_subspace=less,
        confidence={s: float(conf[s]) for s in SUBSPACES},
        cosine=cosine,
    )


def coordinate_gradients(
    heads: Mapping[str, nn.Linear],
    out: ModelOutput,
    targets: Tensor,
    *,
    task: str,
    events: Tensor | None = None,
) -> dict[str, CGCReport]:
    """CGC on every magnification's head of a teacher (``teacher.heads``, its output)."""
    return {
        m: coordinate_head_gradients(heads[m], out.embeddings[m], targets, task=task, events=events)
        for m in out.logits_by_mag
    }
