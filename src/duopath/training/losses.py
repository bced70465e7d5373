"""Loss functions: survival and classification task losses, Cox, IGC and SKD.

Conventions used everywhere here:
* ``events``: 1 = event observed (death / progression), 0 = censored. This is the OPPOSITE
  of MCAT/PORPOISE's ``c`` (censorship) argument; an inverted censor flag is one of the
  pitfalls DESIGN.md lists, so the flag is validated and tested by flipping it.
* survival logits [B, K]: hazards h = sigmoid(logits) per time bin, S(k) = Π_{j<=k}(1-h_j).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from torch import Tensor

from duopath.models.contract import SUBSPACES, ModelOutput

# --------------------------------------------------------------------------- survival


def _check_events(events: Tensor) -> Tensor:
    ev = events.to(torch.float32).flatten()
    if bool(((ev != 0) & (ev != 1)).any()):
        raise ValueError("events must be 0 (censored) or 1 (event observed)")
    return ev


def survival_nll(
    logits: Tensor,
    bins: Tensor,
    events: Tensor,
    alpha: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    """Discrete-time survival negative log-likelihood (MCAT's NLL with an event flag).

    Per patient with time bin y:
    * event (1): -[log h_y + log S(y-1)]  (survived bins < y, event in bin y);
    * censored (0): -log S(y)              (survived through bin y, the MCAT convention).
    ``alpha`` re-weights towards the uncensored term: (1-α)·nll + α·event·uncensored_term.

    Computed in log space (log h = logsigmoid(z), log(1-h) = logsigmoid(-z)), so no clamping
    is needed and extreme logits stay finite.

    Args:
        logits: [B, K]. bins: [B] long in [0, K). events: [B] 0/1.
        reduction: "mean" (over the batch) or "none" ([B]).
    """
    k = logits.shape[-1]
    y = bins.long().flatten()
    if bool(((y < 0) | (y >= k)).any()):
        raise ValueError(f"bins must lie in [0, {k})")
    ev = _check_events(events).to(logits.dtype)
    log_h = F.logsigmoid(logits)
    log_s = torch.cumsum(F.logsigmoid(-logits), dim=-1)
    log_s_prev = F.pad(log_s[:, :-1], (1, 0))
    yi = y.unsqueeze(1)
    uncensored = -(log_h.gather(1, yi) + log_s_prev.gather(1, yi)).squeeze(1)
    censored = -log_s.gather(1, yi).squeeze(1)
    per = ev * uncensored + (1.0 - ev) * censored
    per = (1.0 - alpha) * per + alpha * ev * uncensored
    if reduction == "none":
        return per
    if reduction == "mean":
        return per.mean()
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def fit_time_bins(train_times: ArrayLike, train_events: ArrayLike, n_bins: int = 4) -> np.ndarray:
    """Bin edges from quantiles of the TRAINING split's uncensored times.

    Returns ``n_bins + 1`` edges ``[0, q_1, ..., q_{n-1}, inf]``. Why training only: bins fit
    on the whole cohort leak test times into training (DESIGN.md, "Known defects"). Why
    uncensored only: censoring times say when follow-up stopped, not when events happen.

    Raises:
        ValueError: fewer uncensored times than bins, negative times, or tied quantiles
            (which would leave an empty bin).
    """
    times = np.asarray(train_times, dtype=np.float64).ravel()
    events = np.asarray(train_events).ravel()
    if times.shape != events.shape:
        raise ValueError(f"{times.size} times but {events.size} event flags")
    if not np.isin(events, (0, 1)).all():
        raise ValueError("events must be 0 (censored) or 1 (event observed)")
    if not np.isfinite(times).all() or (times < 0).any():
        raise ValueError("survival times must be finite and >= 0")
    observed = times[events == 1]
    if observed.size < n_bins:
        raise ValueError(f"need >= {n_bins} uncensored training times, got {observed.size}")
    interior = np.quantile(observed, np.linspace(0.0, 1.0, n_bins + 1)[1:-1])
    edges = np.concatenate([[0.0], interior, [np.inf]])
    if not (np.diff(edges) > 0).all():
        raise ValueError(f"tied quantiles {interior.tolist()}: use fewer bins")
    return edges


def assign_bins(times: ArrayLike, edges: ArrayLike) -> np.ndarray:
    """Bin index of each time: k such that edges[k] <= t < edges[k+1] (int64)."""
    t = np.asarray(times, dtype=np.float64).ravel()
    e = np.asarray(edges, dtype=np.float64)
    if not np.isfinite(t).all() or (t < 0).any():
        raise ValueError("survival times must be finite and >= 0")
    idx = np.searchsorted(e, t, side="right") - 1
    return np.clip(idx, 0, e.size - 2).astype(np.int64)


def hazards_from_logits(logits: Tensor) -> Tensor:
    """h = sigmoid(logits) per bin."""
    return torch.sigmoid(logits)


def risk_from_hazards(hazards: Tensor) -> Tensor:
    """Risk score = -Σ_k S(k) (higher = worse prognosis), as used for the C-index."""
    return -torch.cumprod(1.0 - hazards, dim=-1).sum(dim=-1)


def cox_partial_nll(risk: Tensor, times: Tensor, events: Tensor) -> Tensor:
    """Negative Cox partial log-likelihood with Breslow ties, averaged over events.

    -1/n_e · Σ_{i: event} [η_i - log Σ_{j: t_j >= t_i} exp(η_j)]. Breslow: tied event times
    share one risk set containing all of them. The B×B risk-set mask is fine for mini-batches.
    A batch without events carries no information: the loss is 0 (still attached to the graph).
    """
    eta = risk.flatten()
    t = times.flatten().to(eta.dtype)
    ev = _check_events(events).to(eta.dtype)
    at_risk = t[None, :] >= t[:, None]
    log_denom = torch.logsumexp(eta[None, :].masked_fill(~at_risk, float("-inf")), dim=1)
    n_events = ev.sum()
    return -((eta - log_denom) * ev).sum() / n_events.clamp(min=1.0)


# --------------------------------------------------------------------------- classification


def class_weights(train_labels: ArrayLike, n_classes: int) -> Tensor:
    """Balanced class weights N / (C · n_c) from the TRAINING labels.

    Raises:
        ValueError: a class absent from training (its weight would be infinite; a split
            that drops a class should fail loudly, not train silently without it).
    """
    labels = np.asarray(train_labels).ravel().astype(np.int64)
    if labels.size == 0 or labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must be in [0, {n_classes}) and non-empty")
    counts = np.bincount(labels, minlength=n_classes)
    if (counts == 0).any():
        raise ValueError(f"classes {np.flatnonzero(counts == 0).tolist()} absent from training")
    return torch.as_tensor(labels.size / (n_classes * counts), dtype=torch.float32)


def weighted_cross_entropy(logits: Tensor, labels: Tensor, weights: Tensor | None) -> Tensor:
    """Class-weighted cross-entropy (weighted mean over the batch, as ``F.cross_entropy``)."""
    w = None if weights is None else weights.to(logits.device, logits.dtype)
    return F.cross_entropy(logits, labels.long(), weight=w)


# --------------------------------------------------------------------------- IGC


def pool_to_parent(attn_fine: Tensor, parent: Tensor, n_coarse: int) -> Tensor:
    """Sum each fine tile's attention into its enclosing coarse tile.

    Why: the 10x and 20x maps cover different tile counts (the reference compares them
    anyway). With the nested grid (DESIGN.md, "Data contracts") each 10x tile covers 2×2 20x
    tiles, so pooling puts both maps on the SAME tissue units.

    Args:
        attn_fine: [B, Q, N_f]. parent: [B, N_f] coarse index, -1 for padding / no parent.

    Returns:
        [B, Q, n_coarse].
    """
    b, q, _ = attn_fine.shape
    valid = (parent >= 0).to(attn_fine.dtype)
    idx = parent.clamp(min=0).long()[:, None, :].expand(-1, q, -1)
    out = attn_fine.new_zeros(b, q, n_coarse)
    return out.scatter_add(-1, idx, attn_fine * valid[:, None, :])


def _on_coarse(
    attn_coarse: Tensor, attn_fine: Tensor, parent: Tensor, mask_coarse: Tensor
) -> tuple[Tensor, Tensor]:
    keep = mask_coarse[:, None, :].to(attn_coarse.dtype)
    pooled = pool_to_parent(attn_fine, parent, attn_coarse.shape[-1]) * keep
    return attn_coarse * keep, pooled


def igc_diagonal_loss(
    attn_coarse: Tensor,
    attn_fine: Tensor,
    parent: Tensor,
    mask_coarse: Tensor,
    lam: float = 1.0,
    reference: str = "one",
) -> Tensor:
    """The paper's diagonal-element IGC loss, made well-defined.

    1. pool the fine (20x) map onto the coarse (10x) tiles (``pool_to_parent``);
    2. L2-normalise every query's map ("norm_rows"), so C = A^10 · pooled(A^20)ᵀ [B, Q, Q] is
       the cross-scale cosine similarity: C_qq = 1 iff query q looks at the same tissue in
       the same proportions at both scales, 0 iff at disjoint tissue;
    3. ``reference="one"`` (default): λ·mean_q (1 - C_qq)², the diagonal's spread about its
       ideal value 1. ``reference="mean"``: λ·var_q(C_qq) exactly as the paper writes it.

    Why "one" is the default: var(diag C) around the diagonal's own mean is zero whenever all
    queries are EQUALLY consistent — including all maps disjoint across scales — so on its own
    it does not enforce consistency. Averaged over the batch; padding is masked out.

    Args:
        attn_coarse: [B, Q, N_c]; attn_fine: [B, Q, N_f]; parent: [B, N_f];
        mask_coarse: [B, N_c] True = real coarse tile.
    """
    a, p = _on_coarse(attn_coarse, attn_fine, parent, mask_coarse)
    a = F.normalize(a, dim=-1, eps=1e-12)
    p = F.normalize(p, dim=-1, eps=1e-12)
    diag = (a * p).sum(dim=-1)  # [B, Q] = diag(A · Pᵀ) without forming Q×Q
    if reference == "one":
        return lam * (1.0 - diag).square().mean()
    if reference == "mean":
        return lam * diag.var(dim=-1, unbiased=False).mean()
    raise ValueError(f"reference must be 'one' or 'mean', got {reference!r}")


def igc_spatial_loss(
    attn_coarse: Tensor,
    attn_fine: Tensor,
    parent: Tensor,
    mask_coarse: Tensor,
    lam: float = 1.0,
    divergence: str = "js",
    eps: float = 1e-6,
) -> Tensor:
    """Spatial IGC: divergence between the 10x map and the pooled 20x map on the same tiles.

    Both maps are renormalised to distributions over the real coarse tiles (fine tiles with
    no parent lose their mass) and smoothed by ``eps`` on real tiles only. ``"js"`` (default)
    is symmetric and bounded by log 2 — deformable maps are sparse, and KL between sparse
    maps is dominated by the smoothing constant; ``"kl"`` is KL(A^10 ‖ pooled A^20).
    Averaged over batch and queries.
    """
    a, p = _on_coarse(attn_coarse, attn_fine, parent, mask_coarse)
    keep = mask_coarse[:, None, :].to(a.dtype)
    n_real = keep.sum(dim=-1, keepdim=True)

    def _dist(x: Tensor) -> Tensor:
        x = x / x.sum(dim=-1, keepdim=True).clamp(min=1e-12)
        return (x + eps) * keep / (1.0 + eps * n_real)

    a, p = _dist(a), _dist(p)

    def _kl(x: Tensor, y: Tensor) -> Tensor:
        ratio = torch.where(keep > 0, x / y.clamp(min=1e-30), torch.ones_like(x))
        return (x * ratio.log()).sum(dim=-1)

    if divergence == "kl":
        div = _kl(a, p)
    elif divergence == "js":
        m = 0.5 * (a + p)
        div = 0.5 * _kl(a, m) + 0.5 * _kl(p, m)
    else:
        raise ValueError(f"divergence must be 'js' or 'kl', got {divergence!r}")
    return lam * div.mean()


def igc_loss(
    out: ModelOutput,
    parent: Tensor,
    mask: Mapping[str, Tensor],
    *,
    coarse: str = "10x",
    fine: str = "20x",
    kind: str = "diagonal",
    lam: float = 1.0,
    **kwargs: object,
) -> Tensor:
    """IGC for a teacher output, averaged over the T and E subspaces.

    ``parent`` [B, N_fine] maps each fine tile to its coarse tile (-1 = none); ``kind`` is
    "diagonal" (``igc_diagonal_loss``) or "spatial" (``igc_spatial_loss``); extra keyword
    arguments go to that function (``reference`` or ``divergence`` / ``eps``).
    """
    fn: Callable[..., Tensor]
    if kind == "diagonal":
        fn = igc_diagonal_loss
    elif kind == "spatial":
        fn = igc_spatial_loss
    else:
        raise ValueError(f"kind must be 'diagonal' or 'spatial', got {kind!r}")
    terms = [
        fn(out.attention[coarse][s], out.attention[fine][s], parent, mask[coarse], lam, **kwargs)
        for s in SUBSPACES
    ]
    return torch.stack(terms).mean()


# --------------------------------------------------------------------------- SKD


def distillation_kl(
    student_logits: Tensor, teacher_logits: Tensor, task: str, temperature: float = 2.0,
    reduction: str = "mean",
) -> Tensor:
    """Hinton distillation term, ×T², averaged over the batch; the teacher is detached.

    The brief's "KL(student ‖ teacher logits)" is ``F.kl_div(student log-probs, teacher
    probs)``, which computes KL(p_teacher ‖ p_student) — the standard KD direction, used here.
    Classification: softmax at temperature T over classes. Survival: the logits are per-bin
    hazards, not a softmax over bins, so the KL is taken over each bin's Bernoulli
    (h, 1-h) at temperature T (h = sigmoid(z/T)) and summed over bins.
    ``reduction``: "mean" over the batch, or "none" (per sample, [B], still ×T²).
    """
    t = teacher_logits.detach() / temperature
    s = student_logits / temperature
    if task == "classification":
        kl = F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True, reduction="none")
        per = kl.sum(dim=-1)
    elif task == "survival":
        pt = torch.sigmoid(t)
        per = (
            pt * (F.logsigmoid(t) - F.logsigmoid(s)) + (1.0 - pt) * (F.logsigmoid(-t) - F.logsigmoid(-s))
        ).sum(dim=-1)
    else:
        raise ValueError(f"task must be 'survival' or 'classification', got {task!r}")
    if reduction == "none":
        return per * temperature**2
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    return per.mean() * temperature**2


@dataclass
class SKDLoss:
    """SKD total and its parts, each summed over magnifications."""

    total: Tensor
    task: Tensor
    kl: Tensor
    mse: Tensor


def skd_loss(
    student: ModelOutput,
    teacher: ModelOutput,
    task_loss: Callable[[Tensor], Tensor],
    *,
    task: str,
    alpha: float = 0.01,
    beta: float = 0.01,
    temperature: float = 2.0,
    kd_rows: Tensor | None = None,
) -> SKDLoss:
    """Σ_m task(student_m) + α·KL(student_m, teacher_m) + β·MSE([X_S^T;X_S^E], [X_R^T;X_R^E]).

    ``task_loss`` maps student logits [B, C] to the task loss (targets bound by the caller).
    The reference weights are α = β = 0.01 (DESIGN.md). The teacher is detached.

    ``kd_rows`` (long [R]): the student rows the teacher output belongs to (the patients with RNA;
    ``teacher`` then has R rows); None = every row. The task loss covers every row; the KL and
    MSE are summed over the ``kd_rows`` and divided by the batch size B -- a per-sample mask with
    weight 0 on patients without RNA -- so each distilled patient weighs the same whatever the
    batch's mix, and a batch where every patient has RNA gives exactly the unmasked mean.
    """
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    parts: dict[str, list[Tensor]] = {"task": [], "kl": [], "mse": []}
    for m, logits in student.logits_by_mag.items():
        if m not in teacher.logits_by_mag:
            raise KeyError(f"teacher has no {m!r} expert to distil from")
        parts["task"].append(task_loss(logits))
        n = logits.shape[0]
        s_logits, s_emb = logits, student.joint_embedding(m)
        if kd_rows is not None:
            s_logits, s_emb = s_logits.index_select(0, kd_rows), s_emb.index_select(0, kd_rows)
        t_logits, t_emb = teacher.logits_by_mag[m], teacher.joint_embedding(m).detach()
        if t_logits.shape[0] != s_logits.shape[0]:
            raise ValueError(f"teacher output has {t_logits.shape[0]} rows for {s_logits.shape[0]} "
                             "distilled student rows")
        kl = distillation_kl(s_logits, t_logits, task, temperature, reduction="none")
        mse = ((s_emb - t_emb) ** 2).mean(dim=-1)
        parts["kl"].append(kl.sum() / n)
        parts["mse"].append(mse.sum() / n)
    task_t, kl_t, mse_t = (torch.stack(parts[k]).sum() for k in ("task", "kl", "mse"))
    return SKDLoss(total=task_t + alpha * kl_t + beta * mse_t, task=task_t, kl=kl_t, mse=mse_t)
