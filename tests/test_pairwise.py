"""Pair-sum rank metrics (the fast paired bootstrap) equal the frame-based reference metrics.

Each resample is scored both ways: through :mod:`duopath.evaluation.pairwise` (draw counts and
two matrix products) and by running the reference metric (sksurv / scikit-learn via
``duopath.evaluation``) on the resampled frame. Ties in times, risks and scores, censoring at
an event time, duplicated patients and undefined resamples are all exercised.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from duopath.evaluation import (
    bootstrap_pooled_difference,
    pooled_classification_metric,
    pooled_harrell_c,
)
from duopath.evaluation.pairwise import PairwiseRatios, harrell_pairs
from duopath.evaluation.result import quiet_undefined


def _frame_metric(metric, frame: pd.DataFrame, draws: np.ndarray) -> np.ndarray:
    out = []
    with quiet_undefined():
        for idx in draws:
            r = metric.score(frame.iloc[idx])
            out.append(r.value if r.ok else np.nan)
    return np.array(out)


def _survival_frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    return pd.DataFrame({
        "patient_id": [f"P{i}" for i in range(n)],
        "time": rng.integers(1, 6, n).astype(float),  # few distinct times: many ties
        "event": rng.integers(0, 2, n),
        "risk": np.round(rng.normal(size=n), 1),  # rounded: risk ties
    })


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 25))
def test_harrell_pairs_match_sksurv_on_every_resample(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    frame = _survival_frame(rng, n)
    draws = rng.integers(0, n, (30, n))
    fast = pooled_harrell_c.pairs(frame).bootstrap(draws)
    slow = _frame_metric(pooled_harrell_c, frame, draws)
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(slow))
    np.testing.assert_allclose(fast[~np.isnan(fast)], slow[~np.isnan(slow)], atol=1e-12)


@pytest.mark.parametrize("n_classes", [2, 3])
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 25))
def test_auc_pairs_match_sklearn_on_every_resample(n_classes: int, seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    k = rng.integers(1, 4, (n, n_classes)).astype(float)  # few distinct rows: score ties
    p = k / k.sum(axis=1, keepdims=True)
    frame = pd.DataFrame({"patient_id": [f"P{i}" for i in range(n)], "label": rng.integers(0, n_classes, n)})
    for c in range(n_classes):
        frame[f"prob_{c}"] = p[:, c]
    metric = pooled_classification_metric("auc")
    draws = rng.integers(0, n, (30, n))
    fast = metric.pairs(frame).bootstrap(draws)
    slow = _frame_metric(metric, frame, draws)
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(slow))
    np.testing.assert_allclose(fast[~np.isnan(fast)], slow[~np.isnan(slow)], atol=1e-12)


def test_positive_class_choice_reaches_the_pair_sums() -> None:
    frame = pd.DataFrame({"patient_id": ["a", "b", "c"], "label": ["lo", "hi", "hi"],
                          "prob_lo": [0.9, 0.2, 0.6], "prob_hi": [0.1, 0.8, 0.4]})
    for positive in ("hi", "lo"):
        metric = pooled_classification_metric("auc", positive_class=positive)
        assert metric.pairs(frame).value() == pytest.approx(metric(frame).value)


def test_only_rank_metrics_have_pair_sums() -> None:
    assert pooled_classification_metric("accuracy").pairs is None


def test_bootstrap_fast_path_equals_frame_path() -> None:
    rng = np.random.default_rng(3)
    a = _survival_frame(rng, 40)
    b = a.assign(risk=a["risk"] + rng.normal(scale=1.0, size=40))
    fast = bootstrap_pooled_difference(a, b, pooled_harrell_c, n_boot=300, seed=5)
    slow = bootstrap_pooled_difference(a, b, pooled_harrell_c.score, n_boot=300, seed=5)
    assert fast.n_valid == slow.n_valid
    assert fast.ci_low == pytest.approx(slow.ci_low, abs=1e-12)
    assert fast.ci_high == pytest.approx(slow.ci_high, abs=1e-12)


def test_pairwise_ratios_check_shapes_and_undefined() -> None:
    with pytest.raises(ValueError, match="K, n, n"):
        PairwiseRatios(np.zeros((1, 2, 3)), np.zeros((1, 2, 3)))
    only_censored = harrell_pairs([1.0, 2.0], [0, 0], [0.1, 0.2])
    assert np.isnan(only_censored.value())
    with pytest.raises(ValueError, match="weights"):
        only_censored.replicates(np.ones((1, 3)))
