"""What each model optimises, as one step function per objective for :func:`loop.fit_epochs`.

* **Teacher** (and its ablations): the task loss on every magnification's expert + IGC between
  consecutive magnifications; CGC on the head gradients after ``backward`` and before ``step``.
* **Baselines**: the same step with CGC and IGC off (``variants.variant_config`` turns them off:
  both act on the teacher's T/E subspaces), so they share the teacher's protocol exactly.
* **Student** (SKD): Σ_m task(student_m) + α·KL(student_m ‖ teacher_m, T)·T² + β·MSE of the
  [X^T ; X^E] embeddings (:func:`duopath.training.losses.skd_loss`) against the frozen teacher;
  ``student_nokd``: the task loss only.
* **Patients without RNA** (a slide only: ``student.slide_only_patients: task``) enter the
  student's batches with the task loss only: the teacher is run on the batch's patients WITH
  RNA (``Batch.select``) and the KD terms are masked per sample (``losses.skd_loss``'s
  ``kd_rows``), so no teacher output is ever computed for a patient it has no RNA for.

Teacher targets: the teacher runs under ``no_grad`` in eval mode on the SAME subsampled tiles as
the student at every step (with ``max_tiles_train`` the bag differs per step, so a per-epoch
cache would distil from tiles the student never saw). With ``max_tiles_train: null`` the bags
are constant and the targets are cached per patient on first use (the teacher is frozen).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from duopath.config import StudentConfig, TeacherConfig
from duopath.models import ModelOutput
from duopath.training.batch import Batch, Sample
from duopath.training.cgc import coordinate_gradients
from duopath.training.fold_data import FoldData
from duopath.training.losses import (
    cox_partial_nll,
    hazards_from_logits,
    igc_loss,
    risk_from_hazards,
    skd_loss,
    survival_nll,
    weighted_cross_entropy,
)

StepFn = Callable[[list[Sample], Batch], "Step"]


@dataclass
class Step:
    """One training step, as a step function returns it to ``loop.fit_epochs``.

    ``loss`` is what is back-propagated; ``logs`` are the per-step values the epoch log averages
    (keys are the train_log.csv column names); ``after_backward`` runs between ``backward`` and
    the clipping/optimizer step (the teacher's CGC) and may add log values of its own.
    """

    loss: Tensor
    logs: dict[str, float | Tensor]
    after_backward: Callable[[], dict[str, float]] | None = None


def task_loss(logits: Tensor, batch_targets: Tensor, events: Tensor, times: Tensor,
              data: FoldData, cfg: TeacherConfig) -> Tensor:
    """Survival: discrete-time NLL (+ Cox partial likelihood when ``cox_weight`` > 0);
    classification: cross-entropy weighted by the training fold's class weights."""
    if data.task == "survival":
        loss = survival_nll(logits, batch_targets, events, alpha=cfg.survival_alpha)
        if cfg.cox_weight > 0:
            risk = risk_from_hazards(hazards_from_logits(logits))
            loss = loss + cfg.cox_weight * cox_partial_nll(risk, times, events)
        return loss
    return weighted_cross_entropy(logits, batch_targets, data.class_weights)


def eval_loss(logits: Tensor, samples: Sequence[Sample], data: FoldData, cfg: TeacherConfig) -> float:
    """The task loss of full-bag gated logits (validation loss: what ``select_on: val_loss`` reads)."""
    targets = torch.tensor([s.target for s in samples], dtype=torch.long)
    events = torch.tensor([s.event for s in samples], dtype=torch.float32)
    times = torch.tensor([s.time for s in samples], dtype=torch.float32)
    return float(task_loss(logits, targets, events, times, data, cfg))


def igc_term(out: ModelOutput, batch: Batch, mags: Sequence[str], cfg: TeacherConfig) -> Tensor | None:
    """IGC summed over consecutive magnification pairs (coarse, fine); None when it is off."""
    if cfg.igc == "none" or len(mags) < 2 or cfg.igc_lambda == 0:
        return None
    extra = {"reference": cfg.igc_reference} if cfg.igc == "diagonal" else {"divergence": cfg.igc_divergence}
    terms = [
        igc_loss(out, batch.parent[fine], batch.mask, coarse=coarse, fine=fine, kind=cfg.igc,
                 lam=cfg.igc_lambda, **extra)
        for coarse, fine in itertools.pairwise(mags)
    ]
    return torch.stack(terms).sum()


def teacher_step(model: nn.Module, data: FoldData, cfg: TeacherConfig, mags: Sequence[str]) -> StepFn:
    """The teacher's step: task loss on every expert + IGC; CGC after ``backward`` (if on)."""

    def step(chunk: list[Sample], batch: Batch) -> Step:
        out = model(batch.feats, batch.mask, batch.coords, batch.genes_T, batch.genes_E)
        task = torch.stack([  # every expert (magnification, or the RNA-only model's one)
            task_loss(logits, batch.targets, batch.events, batch.times, data, cfg)
            for logits in out.logits_by_mag.values()
        ]).sum()
        igc = igc_term(out, batch, mags, cfg)
        loss = task if igc is None else task + igc
        logs = {"train_task_loss": task, "train_igc_loss": 0.0 if igc is None else igc,
                "cgc_projected_rows": math.nan}
        if not cfg.cgc:
            return Step(loss, logs)

        def cgc() -> dict[str, float]:
            reports = coordinate_gradients(model.heads, out, batch.targets, task=data.task,
                                           events=batch.events if data.task == "survival" else None)
            return {"cgc_projected_rows": float(np.mean([r.projected_rows.float().mean().item()
                                                         for r in reports.values()]))}

        return Step(loss, logs, cgc)

    return step


def student_step(model: nn.Module, data: FoldData, cfg: StudentConfig, teacher_cfg: TeacherConfig,
                 mags: Sequence[str], targets: TeacherTargets | None) -> StepFn:
    """The student's step: SKD against ``targets`` (the frozen teacher), or the task loss only
    (``targets`` None: ``student_nokd``). ``teacher_cfg`` holds the task-loss settings, so the
    students optimise the teacher's task objective. Samples without RNA get the task loss only
    (module docstring); a batch without any skips the teacher."""

    def step(chunk: list[Sample], batch: Batch) -> Step:
        out = model(batch.feats, batch.mask, batch.coords)

        def task_fn(logits: Tensor) -> Tensor:
            return task_loss(logits, batch.targets, batch.events, batch.times, data, teacher_cfg)

        rows = [i for i, s in enumerate(chunk) if s.has_rna]
        if targets is None or not rows:
            task = torch.stack([task_fn(out.logits_by_mag[m]) for m in mags]).sum()
            return Step(task, {"train_task_loss": task, "train_kl_loss": 0.0, "train_mse_loss": 0.0})
        if len(rows) == len(chunk):
            teacher_out, kd_rows = targets(chunk, batch), None
        else:
            teacher_out = targets([chunk[i] for i in rows], batch.select(rows))
            kd_rows = torch.as_tensor(rows, dtype=torch.long, device=batch.targets.device)
        parts = skd_loss(out, teacher_out, task_fn, task=data.task, alpha=cfg.alpha,
                         beta=cfg.beta, temperature=cfg.temperature, kd_rows=kd_rows)
        return Step(parts.total, {"train_task_loss": parts.task, "train_kl_loss": cfg.alpha * parts.kl,
                                  "train_mse_loss": cfg.beta * parts.mse})

    return step


class TeacherTargets:
    """The frozen teacher's logits and joint embeddings for a batch (see module docstring)."""

    def __init__(self, teacher: nn.Module, mags: Sequence[str], cache: bool) -> None:
        self.teacher, self.mags, self.cache = teacher, list(mags), cache
        self._cache: dict[str, tuple[dict[str, Tensor], dict[str, Tensor]]] = {}

    @torch.no_grad()
    def _run(self, batch) -> ModelOutput:
        self.teacher.eval()
        return self.teacher(batch.feats, batch.mask, batch.coords, batch.genes_T, batch.genes_E)

    def __call__(self, chunk: Sequence[Sample], batch) -> ModelOutput:
        ids = [s.patient_id for s in chunk]
        without = [s.patient_id for s in chunk if not s.has_rna]
        if without:  # the student step selects the rows with RNA; anything else is a bug
            raise ValueError(f"teacher targets asked for patients without RNA: {without}")
        if not self.cache or any(p not in self._cache for p in ids):
            out = self._run(batch)
            if not self.cache:
                return out
            for i, p in enumerate(ids):
                self._cache[p] = (out.logits[i], out.gate_weights[i],
                                  {m: out.logits_by_mag[m][i] for m in self.mags},
                                  {m: {s: out.embeddings[m][s][i] for s in out.embeddings[m]}
                                   for m in self.mags})
        hit = [self._cache[p] for p in ids]
        # Only what SKD reads is cached (logits and embeddings); attention maps are not kept.
        return ModelOutput(
            logits=torch.stack([h[0] for h in hit]),
            gate_weights=torch.stack([h[1] for h in hit]),
            logits_by_mag={m: torch.stack([h[2][m] for h in hit]) for m in self.mags},
            embeddings={m: {s: torch.stack([h[3][m][s] for h in hit]) for s in hit[0][3][m]}
                        for m in self.mags},
            attention={}, confidence={})
