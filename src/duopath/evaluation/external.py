"""External validation: a source cohort's slide-only models scored on another cohort's slides.

The paper's deployment claim is a student trained on one cohort and applied, without RNA and
without retraining, to another cohort's slides. Here every fold's model of the source (one per
outer fold, each trained on that fold's training patients) predicts every patient of the
external cohort, and so does their **ensemble**: the mean of the fold models' risks (survival)
or class probabilities (classification). Each is scored with the metrics the source's folds are
scored with (``training.selection.score_predictions``); the survival metrics that need training
outcomes (Uno's C censoring weights, the td-AUC / IBS grid) take them from the fold model's own
training patients (the source split table), as inside the source. The ensemble has no single
set of training patients or bins, so it gets Harrell's C (survival) or the classification
metrics.

Refuses rather than adapts: the external features must come from the encoder (name and weights)
the fold model was trained on, or its numbers mean nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from duopath.evaluation.collect import time_bin_edges
from duopath.training.data import BagStore, DataError

log = logging.getLogger(__name__)

ENSEMBLE = "ensemble"
#: Checkpoint kinds scored externally: slide-only models (an external cohort has no RNA).
SLIDE_KINDS = ("student", "baseline")


@dataclass(frozen=True)
class _Outcome:
    """What ``score_predictions`` reads of a training patient."""

    time: float
    event: float


def _outcomes(sheet: pd.DataFrame):
    from duopath.training.fold_data import patient_outcomes

    return patient_outcomes(sheet)


def external_predictions(
    checkpoints: Sequence[Path | str],
    *,
    sheet: Path | str,
    features_dir: Path | str,
    source_sheet: Path | str,
    source_splits: Path | str,
    task: str,
    device: str = "cpu",
    batch_size: int = 4,
) -> tuple[pd.DataFrame, dict]:
    """(predictions of every fold model and the ensemble, metrics dict) on the external cohort.

    ``checkpoints``: the source model's checkpoint of each outer fold. Predictions carry a
    ``fold`` column (the fold model) and ``member`` (``fold<k>`` or ``ensemble``).
    """
    import torch

    from duopath.checkpoints import load_model
    from duopath.cohort import read_canonical_sheet
    from duopath.training.batch import Sample
    from duopath.training.fold_data import FoldData
    from duopath.training.genes import no_genes
    from duopath.training.loop import predict, prediction_frame
    from duopath.training.selection import score_predictions

    ext = read_canonical_sheet(sheet)
    src = read_canonical_sheet(source_sheet)
    splits = pd.read_csv(source_splits, dtype={"patient_id": str})
    outcomes = _outcomes(ext)
    src_outcomes = _outcomes(src)
    slides = {str(p): [s for s in g["slide_id"] if s] for p, g in ext.groupby("patient_id", sort=True)}
    frames, scores, excluded = [], {}, {}
    meta0: dict | None = None
    for path in checkpoints:
        model, meta = load_model(path, SLIDE_KINDS, device=device)
        fold, mags = int(meta["fold"]), list(meta["magnifications"])
        if meta["task"] != task:
            raise DataError(f"{path}: a {meta['task']} model, the external evaluation is for {task}")
        store = BagStore(slides, features_dir, mags, cache_bytes=2e9)
        if (store.encoder, store.weights_id) != (meta["encoder"], meta["weights_id"]):
            raise DataError(f"external features under {features_dir} are {store.encoder}/{store.weights_id}; "
                            f"{path} was trained on {meta['encoder']}/{meta['weights_id']}: embed the "
                            "external cohort with the source's encoder")
        if meta0 is None:
            meta0 = meta
        excluded.update(store.excluded)
        patients = []
        for pid in store.patients:
            row = outcomes.loc[pid]
            if task == "survival" and not (np.isfinite(row["time"]) and np.isfinite(row["event"])):
                excluded[pid] = "no survival time/event"
            elif task == "classification" and row["label"] not in (meta["class_names"] or []):
                excluded[pid] = f"label {row['label']!r} is not a class the model knows"
            else:
                patients.append(pid)
        if not patients:
            raise DataError(f"no external patient can be scored by {path} ({len(excluded)} left out)")
        samples = [Sample(p, np.zeros(0, np.float32), np.zeros(0, np.float32), 0,
                          float(outcomes.loc[p, "event"]), float(outcomes.loc[p, "time"]),
                          str(outcomes.loc[p, "label"])) for p in patients]
        edges = time_bin_edges(meta, Path(path))
        data = FoldData(fold=fold, task=task, samples={}, genes=no_genes([]), time_bins=edges,
                        class_names=meta.get("class_names"))
        with torch.no_grad():
            logits, gates = predict(model, samples, store, mags, batch_size=batch_size,
                                    device=torch.device(device), genes=False)
        frame = prediction_frame(samples, logits, gates, data, mags).assign(member=f"fold{fold}")
        train_ids = splits.loc[(splits["fold"].astype(int) == fold) & (splits["role"] == "train"),
                               "patient_id"].astype(str)
        train = [_Outcome(float(src_outcomes.loc[p, "time"]), float(src_outcomes.loc[p, "event"]))
                 for p in train_ids if p in src_outcomes.index]
        scores[f"fold{fold}"] = score_predictions(task, frame, data.class_names,
                                                  train=train if task == "survival" else None,
                                                  bin_edges=edges)
        frames.append(frame)
    assert meta0 is not None
    ensemble = _ensemble(frames, task)
    scores[ENSEMBLE] = score_predictions(task, ensemble, meta0.get("class_names"))
    predictions = pd.concat([*frames, ensemble], ignore_index=True)
    for pid, why in sorted(excluded.items()):
        log.warning("external patient %s left out: %s", pid, why)
    metrics = {
        "task": task, "model": meta0.get("variant"),
        "members": [str(f["member"].iloc[0]) for f in frames],
        "ensemble": "mean risk of the fold models" if task == "survival"
        else "mean class probabilities of the fold models",
        "scores": scores, "n_patients": int(ensemble.shape[0]), "excluded": excluded,
        "encoder": meta0["encoder"], "weights_id": meta0["weights_id"],
        "checkpoints": [str(p) for p in checkpoints],
    }
    return predictions, metrics


def _ensemble(frames: Sequence[pd.DataFrame], task: str) -> pd.DataFrame:
    """Mean risk (survival) or mean class probabilities (classification) over the fold models,
    on the patients every fold model scored."""
    common = set.intersection(*(set(f["patient_id"]) for f in frames))
    first = frames[0][frames[0]["patient_id"].isin(common)].set_index("patient_id").sort_index()
    out = first[["time", "event", "label"]].copy()
    stack = [f.set_index("patient_id").loc[out.index] for f in frames]
    if task == "survival":
        out["risk"] = np.mean([s["risk"].to_numpy(float) for s in stack], axis=0)
    else:
        probs = [c for c in frames[0].columns if c.startswith("prob_")]
        for c in probs:
            out[c] = np.mean([s[c].to_numpy(float) for s in stack], axis=0)
        names = [c.removeprefix("prob_") for c in probs]
        out["pred_label"] = [names[i] for i in out[probs].to_numpy().argmax(axis=1)]
        out["risk"] = np.nan
    return out.reset_index().assign(fold=-1, member=ENSEMBLE)
