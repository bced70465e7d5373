"""Fit the teacher on one fold: leakage-free protocol, model selection on the inner VAL split.

Protocol (DESIGN.md "Known defects of the reference code" is the list of what NOT to do):

* **Roles come from the shared split table** (``splits/{cohort}.csv``); a patient in two roles
  of one fold is an error, not a warning.
* **Everything fit from data is fit on the TRAINING patients of the fold**: survival time bins
  (quartiles of training uncensored times), class names and class weights, the RNA z-score
  scaler, and the RNA-mean ablation's mean vector.
* **Model selection and early stopping read the VALIDATION patients only.** The test patients
  are not even handed to the training loop (:func:`train_fold` receives them only to predict,
  once, with the selected weights, after the last epoch).
* AdamW; linear warm-up then cosine decay, stepped once per EPOCH; global grad-norm clipping;
  CGC on the head gradients after ``backward`` and before ``step``; task loss on every
  magnification's expert + IGC between consecutive magnifications.
* Determinism: one seed (``SeedSequence([seed, fold])``) drives the weight init (torch), the
  patient order and the tile subsampling (numpy) — same seed, same predictions on CPU.

Ablations are named models (``teacher_no_cgc`` ...): :func:`variant_config` maps a model name to
the teacher settings it trains with, so the Snakefile and the CLI agree on what a name means.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm import tqdm

from duopath.config import OptimConfig, TeacherConfig
from duopath.evaluation.result import quiet_undefined
from duopath.models import ModelOutput, build_model
from duopath.training.cgc import coordinate_gradients
from duopath.training.data import (
    BagStore,
    Batch,
    DataError,
    FoldGenes,
    Sample,
    collate,
    fold_genes,
    no_genes,
    subsample_bag,
)
from duopath.training.losses import (
    assign_bins,
    class_weights,
    cox_partial_nll,
    fit_time_bins,
    hazards_from_logits,
    igc_loss,
    risk_from_hazards,
    survival_nll,
    weighted_cross_entropy,
)
from duopath.training.selection import EpochSelector, metric_name, score_predictions
from duopath.training.splits import ROLES
from duopath.training.variants import BASE_MODEL, registry_name

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- fold data


@dataclass
class FoldData:
    """One fold's samples per role and everything fit on its training patients."""

    fold: int
    task: str
    samples: dict[str, list[Sample]]
    genes: FoldGenes
    time_bins: np.ndarray | None = None
    class_names: list[str] | None = None
    class_weights: Tensor | None = None
    excluded: dict[str, str] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        if self.task == "survival":
            assert self.time_bins is not None
            return len(self.time_bins) - 1
        assert self.class_names is not None
        return len(self.class_names)


def fold_roles(splits: pd.DataFrame, fold: int) -> dict[str, list[str]]:
    """Patients per role of one fold; a patient in two roles (or twice) is an error."""
    sel = splits[splits["fold"].astype(int) == int(fold)]
    if sel.empty:
        raise DataError(f"fold {fold} is not in the split table (folds: {sorted(splits['fold'].unique())})")
    bad_roles = sorted(set(sel["role"]) - set(ROLES))
    if bad_roles:
        raise DataError(f"unknown roles {bad_roles} in the split table")
    dup = sel["patient_id"][sel["patient_id"].duplicated()].unique()
    if len(dup):
        rows = sel[sel["patient_id"].isin(dup)].sort_values("patient_id")
        detail = ", ".join(f"{p} ({'/'.join(g['role'])})" for p, g in rows.groupby("patient_id"))
        raise DataError(f"fold {fold}: patients in more than one role: {detail}")
    return {r: sorted(sel.loc[sel["role"] == r, "patient_id"].astype(str)) for r in ROLES}


def patient_outcomes(sheet: pd.DataFrame) -> pd.DataFrame:
    """One row per patient (index patient_id): label, time, event; slides must agree."""
    cols = ["label", "time", "event"]
    df = sheet[["patient_id", *cols]].copy()
    df["patient_id"] = df["patient_id"].astype(str)
    df["label"] = df["label"].fillna("").astype(str).str.strip()
    df["time"] = pd.to_numeric(df["time"], errors="coerce")
    df["event"] = pd.to_numeric(df["event"], errors="coerce")
    per = df.groupby("patient_id")
    for c in cols:
        n = per[c].nunique(dropna=False)
        if (n > 1).any():
            bad = n.index[n > 1][:5].tolist()
            raise DataError(f"slides of patients {bad} disagree on {c!r} in the sample sheet")
    return per.first()


def fit_bins(times: np.ndarray, events: np.ndarray, n_bins: int, fold: int) -> np.ndarray:
    """Training-fold bin edges; fewer bins (with a warning) when the fold cannot fill ``n_bins``.

    Why not fail: a small cohort's training fold may hold fewer uncensored times than bins (or
    tied quartiles); fewer, still training-only, bins keep the fold usable and the log says so.
    Below two bins there is nothing to rank with, and that is an error.
    """
    last: Exception | None = None
    for k in range(n_bins, 1, -1):
        try:
            edges = fit_time_bins(times, events, k)
        except ValueError as err:
            last = err
            continue
        if k < n_bins:
            log.warning("fold %d: %d survival bins instead of %d (%s)", fold, k, n_bins, last)
        return edges
    raise DataError(f"fold {fold}: cannot fit 2 survival time bins from the training patients "
                    f"({int(np.sum(events))} uncensored): {last}")


def prepare_fold(
    sheet: pd.DataFrame,
    splits: pd.DataFrame,
    fold: int,
    store: BagStore,
    adata,
    *,
    task: str,
    cfg: TeacherConfig,
) -> FoldData:
    """Samples of one fold (see module docstring for what is fit where).

    ``adata`` None: the cohort has no RNA; samples carry empty gene vectors (slide-only models).
    """
    roles = fold_roles(splits, fold)
    outcomes = patient_outcomes(sheet)
    unknown = sorted({p for ps in roles.values() for p in ps} - set(outcomes.index))
    if unknown:
        raise DataError(f"split patients not in the sample sheet (another cohort's split?): {unknown[:5]}")
    excluded: dict[str, str] = {}
    for pid, why in store.excluded.items():
        excluded[pid] = why
    have_rna = set(outcomes.index) if adata is None else set(map(str, adata.obs_names))
    for role in ROLES:
        keep = []
        for pid in roles[role]:
            row = outcomes.loc[pid]
            if pid not in store.slides:
                excluded.setdefault(pid, "no usable slide")
            elif task == "survival" and not (np.isfinite(row["time"]) and np.isfinite(row["event"])):
                excluded[pid] = "no survival time/event"
            elif task == "classification" and not row["label"]:
                excluded[pid] = "no label"
            elif pid not in have_rna and cfg.missing_rna == "exclude":
                excluded[pid] = "no RNA (teacher.missing_rna: exclude)"
            else:
                keep.append(pid)
        roles[role] = keep
    for pid, why in sorted(excluded.items()):
        log.warning("fold %d: patient %s left out: %s", fold, pid, why)
    if not roles["train"] or not roles["val"] or not roles["test"]:
        raise DataError(f"fold {fold}: a role is empty after exclusions "
                        f"({ {r: len(v) for r, v in roles.items()} })")

    train = roles["train"]
    everyone = [p for r in ROLES for p in roles[r]]
    genes = (no_genes(everyone) if adata is None
             else fold_genes(adata, train, roles["val"] + roles["test"], everyone, cfg.missing_rna))
    data = FoldData(fold=fold, task=task, samples={}, genes=genes, excluded=excluded)
    tr = outcomes.loc[train]
    if task == "survival":
        data.time_bins = fit_bins(tr["time"].to_numpy(), tr["event"].astype(int).to_numpy(),
                                  cfg.time_bins, fold)
    else:
        data.class_names = sorted(tr["label"].unique())
        if len(data.class_names) < 2:
            raise DataError(f"fold {fold}: training patients have one class only {data.class_names}")
        unseen = sorted(set(outcomes.loc[[p for r in ("val", "test") for p in roles[r]], "label"])
                        - set(data.class_names))
        if unseen:
            raise DataError(f"fold {fold}: labels {unseen} occur in val/test but not in training")
        index = {c: i for i, c in enumerate(data.class_names)}
        data.class_weights = class_weights([index[v] for v in tr["label"]], len(data.class_names))
    for role in ROLES:
        out = []
        for pid in roles[role]:
            row = outcomes.loc[pid]
            if task == "survival":
                target = int(assign_bins([row["time"]], data.time_bins)[0])
            else:
                target = data.class_names.index(row["label"])
            g_t, g_e = genes.values[pid]
            out.append(Sample(pid, g_t, g_e, target, float(row["event"]), float(row["time"]),
                              str(row["label"])))
        data.samples[role] = out
    log.info("fold %d: %s patients (train/val/test); %d left out", fold,
             "/".join(str(len(data.samples[r])) for r in ROLES), len(excluded))
    return data


# --------------------------------------------------------------------------- training


def resolve_device(name: str) -> torch.device:
    """``auto`` → the first CUDA device if there is one, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return dev


def lr_factor(epoch: int, *, epochs: int, warmup: int, min_ratio: float) -> float:
    """Learning-rate multiplier of ``epoch`` (0-based): linear warm-up, then cosine to min_ratio."""
    if warmup > 0 and epoch < warmup:
        return (epoch + 1) / (warmup + 1)
    span = max(1, epochs - warmup - 1)
    progress = min(1.0, (epoch - warmup) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def model_kwargs(cfg: TeacherConfig, data: FoldData, feature_dim: int, *, model: str = BASE_MODEL,
                 arch: dict | None = None) -> dict:
    """Keyword arguments of model ``model`` (plain values: stored in the checkpoint).

    The teacher and its ablations take their architecture from ``cfg``; a baseline from
    ``arch`` (``variants.baseline_kwargs``), plus the same data-dependent sizes.
    """
    data_kw = {
        "feature_dim": int(feature_dim),
        "n_genes_T": len(data.genes.genes_T),
        "n_genes_E": len(data.genes.genes_E),
        "n_classes": data.n_classes,
        "task": data.task,
        "magnifications": list(cfg.magnifications or []),
    }
    if not data_kw["magnifications"]:
        raise ValueError("cfg.magnifications must be resolved (use variant_config)")
    if registry_name(model) != BASE_MODEL:
        if arch is None:
            raise ValueError(f"baseline {model!r} needs its architecture settings (arch)")
        return {**data_kw, **arch}
    kw = {
        **data_kw,
        **{k: getattr(cfg, k) for k in (
            "dim", "n_heads", "n_gene_tokens", "gene_hidden", "attention", "n_refs", "n_points",
            "n_interp", "max_offset_tiles", "gene_select_keys", "dropout", "gating",
            "gating_temperature", "disentangle")},
    }
    if cfg.rna_mean:
        kw["rna_mean_T"] = data.genes.train_mean_T.tolist()
        kw["rna_mean_E"] = data.genes.train_mean_E.tolist()
    return kw


@dataclass
class FoldResult:
    """What one fold's training produced (written by ``predict_fold.write_fold``)."""

    model: nn.Module
    model_kwargs: dict
    best_epoch: int
    stopped_early: bool
    log: pd.DataFrame
    predictions: pd.DataFrame
    inner_predictions: pd.DataFrame
    val_scores: dict
    test_scores: dict


def task_loss(logits: Tensor, batch_targets: Tensor, events: Tensor, times: Tensor,
               data: FoldData, cfg: TeacherConfig) -> Tensor:
    if data.task == "survival":
        loss = survival_nll(logits, batch_targets, events, alpha=cfg.survival_alpha)
        if cfg.cox_weight > 0:
            risk = risk_from_hazards(hazards_from_logits(logits))
            loss = loss + cfg.cox_weight * cox_partial_nll(risk, times, events)
        return loss
    return weighted_cross_entropy(logits, batch_targets, data.class_weights)


def _igc(out: ModelOutput, batch, mags: Sequence[str], cfg: TeacherConfig) -> Tensor | None:
    if cfg.igc == "none" or len(mags) < 2 or cfg.igc_lambda == 0:
        return None
    extra = {"reference": cfg.igc_reference} if cfg.igc == "diagonal" else {"divergence": cfg.igc_divergence}
    terms = [
        igc_loss(out, batch.parent[fine], batch.mask, coarse=coarse, fine=fine, kind=cfg.igc,
                 lam=cfg.igc_lambda, **extra)
        for coarse, fine in itertools.pairwise(mags)
    ]
    return torch.stack(terms).sum()


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
    model.eval()
    logits, gates = [], []
    for start in range(0, len(samples), batch_size):
        chunk = list(samples[start:start + batch_size])
        batch = collate(chunk, [store.get(s.patient_id) for s in chunk], mags).to(device)
        rna = (batch.genes_T, batch.genes_E) if genes else ()
        out = model(batch.feats, batch.mask, batch.coords, *rna)
        logits.append(out.logits.float().cpu())
        gates.append(out.gate_weights.float().cpu())
    return torch.cat(logits), torch.cat(gates)


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


def eval_loss(logits: Tensor, samples: Sequence[Sample], data: FoldData, cfg: TeacherConfig) -> float:
    """The task loss of full-bag gated logits (validation loss: what ``select_on: val_loss`` reads)."""
    targets = torch.tensor([s.target for s in samples], dtype=torch.long)
    events = torch.tensor([s.event for s in samples], dtype=torch.float32)
    times = torch.tensor([s.time for s in samples], dtype=torch.float32)
    return float(task_loss(logits, targets, events, times, data, cfg))


def fold_seeds(seed: int, fold: int) -> tuple[int, np.random.SeedSequence]:
    """The torch seed and the numpy seed sequence of one fold."""
    seq = np.random.SeedSequence([int(seed), int(fold)])
    return int(seq.generate_state(1, dtype=np.uint64)[0] % (2**63 - 1)), seq


@dataclass
class Step:
    """One training step, as a model's step function returns it to :func:`fit_epochs`.

    ``loss`` is what is back-propagated; ``logs`` are the per-step values the epoch log averages
    (keys are the train_log.csv column names); ``after_backward`` runs between ``backward`` and
    the clipping/optimizer step (the teacher's CGC) and may add log values of its own.
    """

    loss: Tensor
    logs: dict[str, float | Tensor]
    after_backward: Callable[[], dict[str, float]] | None = None


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
    test patients are predicted once, after the last epoch, with the selected weights. What
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
                      val_scores=val_best, test_scores=test_scores)


def train_fold(
    data: FoldData,
    store: BagStore,
    cfg: TeacherConfig,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    progress: bool = True,
    model_name: str = BASE_MODEL,
    arch: dict | None = None,
) -> FoldResult:
    """Train on ``data.samples["train"]``, select on ``"val"``, then predict ``"test"`` once.

    ``cfg`` must be a resolved variant (:func:`variant_config`): its magnifications set.
    ``model_name``: the teacher, an ablation or a baseline (then ``arch`` holds its settings).
    The step: task loss on every expert + IGC; CGC on the head gradients after ``backward``.
    """
    device = torch.device(device)
    mags = list(cfg.magnifications or [])
    if [m for m in mags if m not in store.magnifications]:
        raise DataError(f"the bag store holds {store.magnifications}, the model needs {mags}")
    torch_seed, seq = fold_seeds(seed, data.fold)
    torch.manual_seed(torch_seed)
    kwargs = model_kwargs(cfg, data, store.feature_dim, model=model_name, arch=arch)
    model = build_model(registry_name(model_name), kwargs).to(device)

    def step(chunk: list[Sample], batch: Batch) -> Step:
        out = model(batch.feats, batch.mask, batch.coords, batch.genes_T, batch.genes_E)
        task = torch.stack([  # every expert (magnification, or the RNA-only model's one)
            task_loss(logits, batch.targets, batch.events, batch.times, data, cfg)
            for logits in out.logits_by_mag.values()
        ]).sum()
        igc = _igc(out, batch, mags, cfg)
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

    return fit_epochs(model, data, store, mags, optim=cfg.optim, max_tiles=cfg.max_tiles_train, seq=seq,
                      step=step, genes=True, loss_cfg=cfg, kwargs=kwargs, desc=f"fold {data.fold}",
                      progress=progress, device=device)
