"""Model selection on the inner validation split, and the scores of a prediction frame.

One place for both, shared by every trainer (teacher and its ablations, baselines, students),
so none can drift into scoring the test fold while choosing an epoch.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from torch import nn

from duopath.training.batch import Sample

__all__ = ["EpochSelector", "metric_name", "score_predictions"]


@dataclass
class EpochSelector:
    """Keeps the weights of the epoch with the best VALIDATION score, and counts epochs since.

    One place for model selection, shared by the teacher and student trainers, so neither can
    drift into scoring the test fold (the reference code's last-epoch-on-test defect).
    ``select_on``: ``val_loss`` (higher score = lower loss) or ``val_metric``; a non-finite score
    (e.g. a validation split without events) never beats a finite one.
    """

    select_on: str
    patience: int | None
    best_score: float = -math.inf
    best_epoch: int = -1
    best_state: dict | None = None
    since_best: int = 0

    def update(self, model: nn.Module, epoch: int, val_loss: float, val_metric: float) -> bool:
        score = -val_loss if self.select_on == "val_loss" else val_metric
        if not np.isfinite(score):
            score = -math.inf
        improved = score > self.best_score
        if improved or self.best_state is None:
            self.best_score, self.best_epoch = score, epoch
            self.best_state = copy.deepcopy(model.state_dict())
            self.since_best = 0
        else:
            self.since_best += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.since_best >= self.patience

    def restore(self, model: nn.Module) -> int:
        """Load the selected weights into ``model``; return the selected epoch."""
        if self.best_state is None:
            raise RuntimeError("no epoch was evaluated")
        model.load_state_dict(self.best_state)
        return self.best_epoch


# --------------------------------------------------------------------------- scores


def score_predictions(
    task: str,
    frame: pd.DataFrame,
    class_names: Sequence[str] | None = None,
    *,
    train: Sequence[Sample] | None = None,
    bin_edges: np.ndarray | None = None,
) -> dict:
    """Metrics of a prediction frame via :mod:`duopath.evaluation` (plain floats, NaN when
    undefined, with the reasons under ``"undefined"``).

    Survival: Harrell's C always; with the fold's ``train`` samples (and ``bin_edges`` for the
    survival curves) also Uno's C, mean td-AUC and the IBS, whose censoring weights come from
    the TRAINING patients. Classification: AUC, accuracy, balanced accuracy, macro F1,
    sensitivity, specificity (``prob_<class>`` columns in ``class_names`` order).
    An undefined value (no events in a small validation split, one class present) is NaN, not
    an error.
    """
    from duopath.evaluation.metrics import (
        evaluate_classification_predictions,
        evaluate_survival_predictions,
    )
    from duopath.evaluation.survival import harrell_c

    results: dict
    if task == "survival":
        if train is None:
            results = {"c_harrell": harrell_c(frame["time"].to_numpy(float), frame["event"].to_numpy(),
                                              frame["risk"].to_numpy(float))}
        else:
            results = evaluate_survival_predictions(
                frame, [s.time for s in train], [s.event for s in train], bin_edges)
        extra = {"n": len(frame), "n_events": int(np.nansum(frame["event"].to_numpy(float)))}
    elif task == "classification":
        if class_names is None:
            raise ValueError("classification scores need class_names")
        results = evaluate_classification_predictions(frame[["label", *[f"prob_{c}" for c in class_names]]])
        extra = {"n": len(frame)}
    else:
        raise ValueError(f"task must be 'survival' or 'classification', got {task!r}")
    out: dict = {k: float(v.value) for k, v in results.items()}
    reasons = {k: v.reason for k, v in results.items() if not v.ok}
    if reasons:
        out["undefined"] = reasons
    return {**out, **extra}


def metric_name(task: str) -> str:
    """The validation metric logged per epoch (and optionally used for selection)."""
    return "c_harrell" if task == "survival" else "auc"
