"""The epoch loop every model of a fold trains under, and the prediction frames it writes.

* AdamW; linear warm-up then cosine decay, stepped once per EPOCH; global grad-norm clipping;
  the objective's ``after_backward`` (the teacher's CGC) between ``backward`` and ``step``.
* **Model selection and early stopping read the VALIDATION patients only.** The test patients
  are predicted once, with the selected weights, after the last epoch.
* Determinism: one seed (``SeedSequence([seed, fold])``) drives the weight init (torch), the
  patient order and the tile subsampling (numpy) -- same seed, same predictions on CPU.

What differs between models (teacher, ablations, baselines, students) is only the step function
(:mod:`duopath.training.objectives`) and whether their forward takes gene vectors, so a protocol
fix lands in every model at once.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm import tqdm

from duopath.config import OptimConfig, TeacherConfig
from duopath.evaluation.result import quiet_undefined
from duopath.models.contract import ModelOutput
from duopath.training.batch import Batch, Sample, collate
from duopath.training.data import BagStore, subsample_bag
from duopath.training.fold_data import FoldData
from duopath.training.gate_fit import fit_validation_gate
from duopath.training.losses import hazards_from_logits, risk_from_hazards
from duopath.training.objectives import Step, eval_loss
from duopath.training.selection import EpochSelector, metric_name, score_predictions

log = logging.getLogger(__name__)


def fold_seeds(seed: int, fold: int) -> tuple[int, np.random.SeedSequence]:
    """The torch seed and the numpy seed sequence of one fold."""
    seq = np.random.SeedSequence([int(seed), int(fold)])
    return int(seq.generate_state(1, dtype=np.uint64)[0] % (2**63 - 1)), seq


def lr_factor(epoch: int, *, epochs: int, warmup: int, min_ratio: float) -> float:
    """Learning-rate multiplier of ``epoch`` (0-based): linear warm-up, then cosine to min_ratio."""
    if warmup > 0 and epoch < warmup:
        return (epoch + 1) / (warmup + 1)
    span = max(1, epochs - warmup - 1)
    progress = min(1.0, (epoch - warmup) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class FoldResult:
    """What one fold's training produced (written by ``duopath.training.outputs``)."""

    model: nn.Module
    model_kwargs: dict
    best_epoch: int
    stopped_early: bool
    log: pd.DataFrame
    predictions: pd.DataFrame
    inner_predictions: pd.DataFrame
    val_scores: dict
    test_scores: dict
    gate_fit: dict | None = None


def _outputs(
    model: nn.Module, samples: Sequence[Sample], store: BagStore, mags: Sequence[str], *,
    batch_size: int, device: torch.device, genes: bool,
) -> Iterator[ModelOutput]:
    """The model's outputs on FULL bags, ``batch_size`` patients at a time, in ``samples`` order."""
    model.eval()
    for start in range(0, len(samples), batch_size):
        chunk = list(samples[start:start + batch_size])
        batch = collate(chunk, [store.get(s.patient_id) for s in chunk], mags).to(device)
        rna = (batch.genes_T, batch.genes_E) if genes else ()
        yield model(batch.feats, batch.mask, batch.coords, *rna)


@torch.no_grad()
def predict(
    model: nn.Module,
    samples: Sequence[Sample],
    store: BagStore,
    mags: Sequence[str],
    *,
    batch_size: int,
    device: torch.device,
    genes: bool = True,
) -> tuple[Tensor, Tensor]:
    """Gated logits [N, C] and gate weights [N, M] on FULL bags, in ``samples`` order.

    ``genes=False`` for histology-only models (the student), whose forward takes no gene vectors.
    """
    logits, gates = [], []
    for out in _outputs(model, samples, store, mags, batch_size=batch_size, device=device, genes=genes):
        logits.append(out.logits.float().cpu())
        gates.append(out.gate_weights.float().cpu())
    return torch.cat(logits), torch.cat(gates)


@torch.no_grad()
def predict_experts(
    model: nn.Module, samples: Sequence[Sample], store: BagStore, mags: Sequence[str], *,
    batch_size: int, device: torch.device, genes: bool = True,
) -> dict[str, Tensor]:
    """Each expert's own logits [N, C] on FULL bags (what ``gate_fit`` weighs), by expert name."""
    parts: dict[str, list[Tensor]] = {}
    for out in _outputs(model, samples, store, mags, batch_size=batch_size, device=device, genes=genes):
        for k, v in out.logits_by_mag.items():
            parts.setdefault(k, []).append(v.float().cpu())
    return {k: torch.cat(v) for k, v in parts.items()}


def prediction_frame(
    samples: Sequence[Sample], logits: Tensor, gates: Tensor, data: FoldData, mags: Sequence[str]
) -> pd.DataFrame:
    """One row per patient: patient_id, fold, risk, time, event, label, prob_*/surv_*, gate_*.

    Survival: ``risk`` = -Σ_k S(k) (higher = worse), ``surv_k`` = S(k), the probability of
    surviving through bin k (bin edges in the checkpoint). Classification: ``prob_<class>``,
    ``pred_label``; ``risk`` is NaN (there is no single risk score).
    """
    frame = pd.DataFrame({
        "patient_id": [s.patient_id for s in samples],
        "fold": data.fold,
        "time": [s.time for s in samples],
        "event": [s.event for s in samples],
        "label": [s.label for s in samples],
    })
    if data.task == "survival":
        hazards = hazards_from_logits(logits)
        surv = torch.cumprod(1.0 - hazards, dim=-1).numpy()
        frame.insert(2, "risk", risk_from_hazards(hazards).numpy().astype(np.float64))
        for k in range(surv.shape[1]):
            frame[f"surv_{k}"] = surv[:, k].astype(np.float64)
    else:
        assert data.class_names is not None
        probs = torch.softmax(logits, dim=-1).numpy()
        frame.insert(2, "risk", np.nan)
        for i, c in enumerate(data.class_names):
            frame[f"prob_{c}"] = probs[:, i].astype(np.float64)
        frame["pred_label"] = [data.class_names[i] for i in probs.argmax(axis=1)]
    if gates.shape[1] == len(mags):  # an RNA-only model has one expert and no magnification gate
        for j, m in enumerate(mags):
            frame[f"gate_{m}"] = gates[:, j].numpy().astype(np.float64)
    return frame


def fit_epochs(
    model: nn.Module,
    data: FoldData,
    store: BagStore,
    mags: Sequence[str],
    *,
    optim: OptimConfig,
    max_tiles: int | None,
    seq: np.random.SeedSequence,
    step: Callable[[list[Sample], Batch], Step],
    genes: bool,
    loss_cfg: TeacherConfig,
    kwargs: dict,
    desc: str,
    progress: bool,
    device: torch.device,
) -> FoldResult:
    """The protocol every model of a fold trains under (teacher, ablations, baselines, students).

    AdamW; warm-up + cosine stepped per epoch; clipping; one numpy stream per epoch (patient
    order and tile subsampling); the epoch kept is chosen on the VALIDATION split only, and the
    test patients are predicted once, after the last epoch, with the selected weights (and, for
    ``gating: validation``, the expert weighting chosen for them on the validation patients,
    ``gate_fit``). What
    differs between models is only ``step`` (forward + loss of one batch) and whether their
    forward takes gene vectors (``genes``, see :func:`predict`), so a protocol fix lands in every
    model at once. ``loss_cfg`` holds the task-loss settings (survival alpha, Cox weight) of the
    validation loss.
    """

    def predict_fn(samples: Sequence[Sample]) -> tuple[Tensor, Tensor]:
        return predict(model, samples, store, mags, batch_size=optim.eval_batch_size, device=device,
                       genes=genes)

    optimizer = torch.optim.AdamW(model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: lr_factor(e, epochs=optim.epochs, warmup=optim.warmup_epochs,
                                       min_ratio=optim.min_lr_ratio))
    train, val = data.samples["train"], data.samples["val"]
    mname = metric_name(data.task)
    rows: list[dict] = []
    selector = EpochSelector(optim.select_on, optim.patience)
    stopped = False
    epoch_rngs = [np.random.default_rng(s) for s in seq.spawn(optim.epochs)]

    bar = tqdm(range(optim.epochs), desc=desc, disable=not progress, mininterval=5)
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        rng = epoch_rngs[epoch]
        order = rng.permutation(len(train))
        sums: dict[str, float] = {"train_loss": 0.0}
        n_steps = 0
        lr = optimizer.param_groups[0]["lr"]
        for start in range(0, len(order), optim.batch_size):
            chunk = [train[i] for i in order[start:start + optim.batch_size]]
            bags = [subsample_bag(store.get(s.patient_id), mags, max_tiles, rng) for s in chunk]
            out = step(chunk, collate(chunk, bags, mags).to(device))
            if not torch.isfinite(out.loss):
                raise FloatingPointError(f"{desc} epoch {epoch}: non-finite loss {float(out.loss)}")
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            logs = {"train_loss": out.loss, **out.logs}
            if out.after_backward is not None:
                logs.update(out.after_backward())
            if optim.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip)
            optimizer.step()
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach() if isinstance(v, Tensor) else v)
            n_steps += 1
        scheduler.step()

        logits, gates = predict_fn(val)
        val_loss = eval_loss(logits, val, data, loss_cfg)
        with quiet_undefined():  # a tiny val split without events is normal; logged once below
            val_scores = score_predictions(data.task, prediction_frame(val, logits, gates, data, mags),
                                           data.class_names)
        val_metric = val_scores[mname]
        improved = selector.update(model, epoch, val_loss, val_metric)
        means = {k: v / n_steps for k, v in sums.items()}
        rows.append({"epoch": epoch, "lr": lr, **means, "val_loss": val_loss, "val_metric": val_metric,
                     "improved": improved, "seconds": time.perf_counter() - t0})
        bar.set_postfix(train=f"{means['train_loss']:.3f}", val=f"{val_loss:.3f}",
                        **{mname: f"{val_metric:.3f}"})
        parts = " ".join(f"{k.removeprefix('train_')} {v:.4g}" for k, v in means.items() if k != "train_loss")
        log.info("%s epoch %d: train %.4f (%s)  val loss %.4f  val %s %.3f%s", desc, epoch,
                 means["train_loss"], parts, val_loss, mname, val_metric, "  *" if improved else "")
        if selector.should_stop:
            stopped = True
            log.info("%s: early stop at epoch %d (best %d)", desc, epoch, selector.best_epoch)
            break

    best_epoch = selector.restore(model)
    gate_fit = None
    if getattr(model, "gating", None) == "validation":  # after the epoch is chosen, before val/test

        def gate_score(gated: Tensor) -> float:  # higher is better, on the validation patients
            if optim.select_on == "val_loss":
                return -eval_loss(gated, val, data, loss_cfg)
            with quiet_undefined():
                frame = prediction_frame(val, gated, torch.empty(len(val), 0), data, mags)
                return score_predictions(data.task, frame, data.class_names)[mname]

        experts = predict_experts(model, val, store, mags, batch_size=optim.eval_batch_size,
                                  device=device, genes=genes)
        gate_fit = fit_validation_gate(model, experts, gate_score, criterion=optim.select_on, desc=desc)
    history = pd.DataFrame(rows)
    history["selected"] = history["epoch"] == best_epoch

    logits, gates = predict_fn(val)
    val_frame = prediction_frame(val, logits, gates, data, mags)
    val_best = score_predictions(data.task, val_frame, data.class_names, train=train,
                                 bin_edges=data.time_bins)
    val_best["loss"] = eval_loss(logits, val, data, loss_cfg)
    logits, gates = predict_fn(train)
    inner = pd.concat([prediction_frame(train, logits, gates, data, mags).assign(role="train"),
                       val_frame.assign(role="val")], ignore_index=True)

    # The test fold, touched once, with the selected weights.
    test = data.samples["test"]
    logits, gates = predict_fn(test)
    test_frame = prediction_frame(test, logits, gates, data, mags)
    test_scores = score_predictions(data.task, test_frame, data.class_names, train=train,
                                    bin_edges=data.time_bins)
    log.info("%s: best epoch %d; test %s", desc, best_epoch,
             {k: round(v, 4) if isinstance(v, float) else v for k, v in test_scores.items()})
    if all(not np.isfinite(v) for v in history["val_metric"]):
        log.warning("%s: the validation %s was undefined at every epoch (too few patients or "
                    "events in the validation split)", desc, mname)
    return FoldResult(model=model, model_kwargs=kwargs, best_epoch=best_epoch, stopped_early=stopped,
                      log=history, predictions=test_frame, inner_predictions=inner,
                      val_scores=val_best, test_scores=test_scores, gate_fit=gate_fit)
