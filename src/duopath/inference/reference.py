"""What a prediction is compared with: the training patients' risks and slide embeddings.

Why: a risk of 0.83 means nothing alone. ``duopath predict`` reports where a new patient falls
among the risks the model gave its TRAINING patients (percentile, the risk-group threshold, which
is the median of the same risks), and warns when the slide is out of distribution: its risk
outside the training range, or its mean tile embedding farther from the training slides' centroid
than any training slide (per magnification, Euclidean distance after scaling each feature by its
spread over the training slides, so one high-variance feature does not dominate).

The reference is computed once at training time (``training_reference``) and stored in the
student checkpoint under ``"reference"`` as plain lists (JSON-able): ``risks`` (sorted training
risks, survival only) and per magnification ``centroid``, ``scale`` and ``distances`` (each
training slide's distance to the centroid).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

SCALE_FLOOR = 1e-6
"""Floor of a feature's spread (a constant feature would otherwise divide by zero)."""


def slide_means(feats: np.ndarray, slide: np.ndarray) -> np.ndarray:
    """Mean embedding [S, D] of each slide of a pooled bag (``slide`` = slide index per tile)."""
    feats = np.asarray(feats, np.float64)
    ids = np.unique(slide)
    if not ids.size:
        return np.zeros((0, feats.shape[1]))
    return np.stack([feats[slide == k].mean(axis=0) for k in ids])


def embedding_reference(means: np.ndarray) -> dict:
    """Centroid, per-feature scale and each training slide's scaled distance to the centroid."""
    centroid = means.mean(axis=0)
    scale = np.maximum(means.std(axis=0), SCALE_FLOOR)
    dist = np.linalg.norm((means - centroid) / scale, axis=1)
    return {"centroid": centroid.tolist(), "scale": scale.tolist(), "distances": sorted(dist.tolist())}


def training_reference(bags: Iterable, mags: Sequence[str], inner_predictions: pd.DataFrame | None,
                       task: str) -> dict:
    """The checkpoint's ``"reference"`` from the training patients' bags (``PatientBag``) and the
    selected model's ``inner_predictions`` (rows with ``role == "train"``)."""
    per_mag: dict[str, list[np.ndarray]] = {m: [] for m in mags}
    for bag in bags:
        for m in mags:
            if len(bag.mags[m]):
                per_mag[m].append(slide_means(bag.mags[m].feats, np.asarray(bag.mags[m].slide)))
    out: dict = {"embedding": {m: embedding_reference(np.concatenate(v)) for m, v in per_mag.items() if v}}
    if task == "survival" and inner_predictions is not None and "risk" in inner_predictions:
        train = inner_predictions[inner_predictions["role"] == "train"]["risk"].to_numpy(float)
        out["risks"] = sorted(train[np.isfinite(train)].tolist())
    return out


def risk_percentile(risk: float, risks: Sequence[float]) -> float:
    """Share (in %) of the training risks at or below ``risk`` (mid-rank for ties)."""
    r = np.asarray(risks, float)
    below, equal = float((r < risk).sum()), float((r == risk).sum())
    return 100.0 * (below + 0.5 * equal) / r.size


def out_of_distribution(risk: float | None, feats: Mapping[str, tuple[np.ndarray, np.ndarray]],
                        reference: Mapping | None) -> dict:
    """Compare one patient with the training reference (module docstring).

    ``feats``: magnification → (features [N, D], slide index [N]) of the new patient's pooled bag.
    Returns ``{"flag", "reasons", "embedding": {mag: {slide k: distance, training max}}, ...}``;
    without a reference, ``flag`` is None and ``reasons`` says the check could not run.
    """
    if not reference:
        return {"flag": None, "reasons": ["the checkpoint carries no training reference (trained before "
                                          "this check existed): distribution not checked"]}
    reasons: list[str] = []
    report: dict = {"embedding": {}}
    risks = reference.get("risks")
    if risk is not None and risks:
        lo, hi = float(risks[0]), float(risks[-1])
        report["training_risk_range"] = [lo, hi]
        if not lo <= risk <= hi:
            reasons.append(f"risk {risk:.4g} lies outside every risk the model gave its "
                           f"{len(risks)} training patients ({lo:.4g} to {hi:.4g})")
    for m, (x, slide) in feats.items():
        ref = (reference.get("embedding") or {}).get(m)
        if ref is None or len(x) == 0:
            continue
        means = slide_means(x, slide)
        dist = np.linalg.norm((means - np.asarray(ref["centroid"])) / np.asarray(ref["scale"]), axis=1)
        train_max = float(max(ref["distances"]))
        report["embedding"][m] = {"distance": dist.tolist(), "training_max": train_max,
                                  "training_median": float(np.median(ref["distances"]))}
        for k, d in enumerate(dist):
            if d > train_max:
                reasons.append(f"slide {k + 1}: its mean {m} tile embedding is {d:.3g} from the training "
                               f"slides' centroid, farther than any of the {len(ref['distances'])} "
                               f"training slides (max {train_max:.3g})")
    report.update(flag=bool(reasons), reasons=reasons)
    return report
