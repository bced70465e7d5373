"""Classification metrics on one held-out fold, from class probabilities.

Conventions:
* ``proba`` [n, C]: one column per class in the order of ``classes`` (predictions.parquet's
  ``prob_<class>`` columns, in column order); rows must sum to 1 (softmax output).
* The predicted class is the argmax of ``proba`` (ties go to the earlier class), the same
  rule for binary and multi-class, so the 'decision' metrics never depend on a threshold the
  report does not show.
* Binary: the positive class is ``classes[1]`` unless ``positive_class`` says otherwise;
  AUC is the plain ROC AUC of P(positive); sensitivity/specificity are those of the
  positive class.
* Multi-class: AUC is the macro one-vs-rest AUC; sensitivity is the macro mean of per-class
  recall over the classes present in the fold (= balanced accuracy); specificity the macro
  mean of per-class one-vs-rest specificity TN/(TN+FP) over the classes that have negatives.
  Macro F1 averages F1 over the classes that occur in truth or prediction (sklearn's
  ``zero_division=np.nan`` rule: a class absent from both has no defined F1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import confusion_matrix, roc_auc_score

from duopath.evaluation.result import MetricResult, computed, undefined

CLASSIFICATION_METRICS = ("auc", "accuracy", "balanced_accuracy", "f1_macro", "sensitivity", "specificity")


def _inputs(
    y_true: ArrayLike, proba: ArrayLike, classes: Sequence[object] | None
) -> tuple[np.ndarray, np.ndarray, list[object]]:
    y = np.asarray(y_true)
    p = np.asarray(proba, dtype=float)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    if p.ndim != 2 or p.shape[0] != y.shape[0] or p.shape[1] < 2:
        raise ValueError(f"proba must be [{y.shape[0]}, C>=2], got shape {p.shape}")
    cls = list(range(p.shape[1])) if classes is None else list(classes)
    if len(cls) != p.shape[1] or len(set(cls)) != len(cls):
        raise ValueError(
            f"need {p.shape[1]} distinct classes for {p.shape[1]} probability columns, got {cls}"
        )
    unknown = sorted({str(v) for v in y} - {str(c) for c in cls})
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {cls}")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("probabilities must be finite and in [0, 1]")
    if not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("probability rows must sum to 1")
    # labels as class indices: compare as strings so int labels match 'prob_1'-style names
    index = {str(c): i for i, c in enumerate(cls)}
    return np.array([index[str(v)] for v in y], dtype=int), p, cls


def _positive_index(cls: list[object], positive_class: object | None) -> int:
    if positive_class is not None and len(cls) != 2:
        raise ValueError("positive_class only applies to binary tasks")
    if positive_class is None:
        return 1
    if str(positive_class) in [str(c) for c in cls]:
        return [str(c) for c in cls].index(str(positive_class))
    raise ValueError(f"positive_class {positive_class!r} is not among {cls}")


def classification_inputs(
    y_true: ArrayLike, proba: ArrayLike, classes: Sequence[object] | None, positive_class: object | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Validated (class-index labels, probabilities, positive column) as the metrics use them."""
    y, p, cls = _inputs(y_true, proba, classes)
    return y, p, _positive_index(cls, positive_class)


def _auc(y: np.ndarray, p: np.ndarray, cls: list[object], pos: int) -> MetricResult:
    counts = np.bincount(y, minlength=len(cls))
    if len(cls) == 2:
        if counts.min() == 0:
            return undefined("AUC", f"a single class in the test fold ({cls[int(counts.argmax())]!r})")
        return computed(roc_auc_score(y == pos, p[:, pos]))
    absent = [cls[i] for i in np.flatnonzero(counts == 0)]
    if absent:
        return undefined("AUC", f"classes {absent} absent from the test fold: one-vs-rest AUC undefined")
    return computed(roc_auc_score(y, p, multi_class="ovr", average="macro", labels=list(range(len(cls)))))


def classification_metrics(
    y_true: ArrayLike,
    proba: ArrayLike,
    classes: Sequence[object] | None = None,
    positive_class: object | None = None,
) -> dict[str, MetricResult]:
    """AUC, accuracy, balanced accuracy, macro F1, sensitivity, specificity (keys as in
    ``CLASSIFICATION_METRICS``). See the module docstring for the binary / multi-class rules.
    """
    y, p, cls = _inputs(y_true, proba, classes)
    n_cls = len(cls)
    pos = _positive_index(cls, positive_class)
    if y.size == 0:
        return {m: undefined(m, "empty test fold") for m in CLASSIFICATION_METRICS}

    pred = p.argmax(axis=1)
    cm = confusion_matrix(y, pred, labels=list(range(n_cls))).astype(float)
    tp = np.diag(cm)
    support = cm.sum(axis=1)  # true members of each class
    predicted = cm.sum(axis=0)
    n = cm.sum()
    negatives = n - support
    tn = n - support - predicted + tp

    out: dict[str, MetricResult] = {"auc": _auc(y, p, cls, pos), "accuracy": computed(tp.sum() / n)}
    present = support > 0
    out["balanced_accuracy"] = computed(np.mean(tp[present] / support[present]))
    occurs = (support + predicted) > 0
    out["f1_macro"] = computed(np.mean(2 * tp[occurs] / (support[occurs] + predicted[occurs])))

    if n_cls == 2:
        neg = 1 - pos
        out["sensitivity"] = (
            computed(tp[pos] / support[pos])
            if support[pos] > 0
            else undefined("sensitivity", f"no positive ({cls[pos]!r}) patients in the test fold")
        )
        out["specificity"] = (
            computed(tp[neg] / support[neg])
            if support[neg] > 0
            else undefined("specificity", f"no negative ({cls[neg]!r}) patients in the test fold")
        )
    else:
        out["sensitivity"] = out["balanced_accuracy"]
        # with >= 3 classes at least two classes always have negatives, so this is defined
        has_neg = negatives > 0
        out["specificity"] = computed(np.mean(tn[has_neg] / negatives[has_neg]))
    return out
