"""Evaluation metrics against their references (scikit-survival, lifelines, scikit-learn, scipy)
and against hand-computed cases; undefined metrics must be NaN with a reason, never 0."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.statistics import logrank_test
from lifelines.utils import concordance_index as lifelines_cindex
from scipy import stats
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    multilabel_confusion_matrix,
    recall_score,
    roc_auc_score,
)
from sksurv.metrics import (
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
)
from sksurv.metrics import (
    integrated_brier_score as sksurv_ibs,
)

from duopath.evaluation import (
    MetricResult,
    SurvivalCurve,
    bootstrap_pooled_difference,
    classification_metrics,
    compare_models,
    evaluate_classification_predictions,
    evaluate_survival_predictions,
    format_mean_std,
    harrell_c,
    integrated_brier_score,
    long_table,
    paired_fold_test,
    pooled_classification_metric,
    pooled_harrell_c,
    risk_groups,
    summarize_folds,
    survival_curve_from_hazards,
    survival_fold_metrics,
    time_dependent_auc,
    time_grid,
    uno_c,
)
from duopath.evaluation.result import structured


def cohort(rng: np.random.Generator, n: int, tie_step: float = 0.0, censor_scale: float = 1.5):
    """Exponential times whose hazard rises with a covariate, random censoring.

    ``tie_step`` > 0 rounds times (tied times) and the covariate-based risk (tied risks).
    Returns time, event (0/1), risk (higher = worse).
    """
    x = rng.normal(size=n)
    t_event = rng.exponential(np.exp(-x))
    t_cens = rng.exponential(censor_scale, size=n)
    time = np.minimum(t_event, t_cens)
    event = (t_event <= t_cens).astype(int)
    risk = x + rng.normal(scale=0.7, size=n)
    if tie_step:
        time = np.ceil(time / tie_step) * tie_step
        risk = np.round(risk)
    return time, event, risk


def train_test(seed: int, n_train: int = 150, n_test: int = 60):
    rng = np.random.default_rng(seed)
    tr = cohort(rng, n_train)
    te = cohort(rng, n_test)
    # keep the test follow-up inside the training one, so sksurv's own functions accept it
    keep = te[0] < tr[0].max()
    return tr, tuple(a[keep] for a in te)


# --------------------------------------------------------------------------- concordance


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_harrell_matches_sksurv_and_lifelines_with_ties_and_censoring(seed: int) -> None:
    time, event, risk = cohort(np.random.default_rng(seed), 80, tie_step=0.25)
    assert len(np.unique(time)) < len(time) and len(np.unique(risk)) < len(risk)  # ties present
    assert 0 < event.mean() < 1  # censoring present
    ours = harrell_c(time, event, risk)
    assert ours.ok
    assert ours.value == pytest.approx(
        concordance_index_censored(event.astype(bool), time, risk)[0], abs=1e-12
    )
    # lifelines scores "higher = longer survival": pass -risk
    assert ours.value == pytest.approx(lifelines_cindex(time, -risk, event), abs=1e-12)


def test_harrell_hand_computed_four_patients() -> None:
    # comparable pairs (earlier time is an event): (1,2) (1,3) (1,4) (3,4); patient 2 is censored.
    # patient 1 (risk 4) beats 3, 2, 2 -> 3 concordant; (3,4) have tied risks 2, 2 -> 1/2.
    res = harrell_c([1.0, 2.0, 3.0, 4.0], [1, 0, 1, 0], [4.0, 3.0, 2.0, 2.0])
    assert res.value == pytest.approx(3.5 / 4)
    # risk sign: reversing the ranking gives the complement
    assert harrell_c([1.0, 2.0, 3.0, 4.0], [1, 0, 1, 0], [-4.0, -3.0, -2.0, -2.0]).value == pytest.approx(
        0.5 / 4
    )


@pytest.mark.parametrize("seed", [3, 4])
def test_uno_matches_sksurv_at_training_75th_percentile(seed: int) -> None:
    (tr_t, tr_e, _), (t, e, r) = train_test(seed)
    tau = np.quantile(tr_t, 0.75)
    expected = concordance_index_ipcw(
        structured(tr_t, tr_e.astype(bool)), structured(t, e.astype(bool)), r, tau=tau
    )
    assert uno_c(tr_t, tr_e, t, e, r).value == pytest.approx(expected[0], abs=1e-12)
    # tau really comes from the training times: the test quantile gives a different value
    other = uno_c(tr_t, tr_e, t, e, r, tau=float(np.quantile(t, 0.5)))
    assert other.value != pytest.approx(expected[0], abs=1e-9)


def test_uno_tau_beyond_training_follow_up_is_nan_with_reason() -> None:
    (tr_t, tr_e, _), (t, e, r) = train_test(5)
    res = uno_c(tr_t, tr_e, t, e, r, tau=tr_t.max() * 2)
    assert math.isnan(res.value) and "beyond the training follow-up" in res.reason


def test_invalid_inputs_raise_not_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        harrell_c([1.0, 2.0, 3.0], [1, 1, 0], [0.1, np.nan, 0.3])
    with pytest.raises(ValueError, match="0 \\(censored\\) or 1"):
        harrell_c([1.0, 2.0, 3.0], [1, 2, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="length"):
        harrell_c([1.0, 2.0, 3.0], [1, 0], [0.1, 0.2, 0.3])


# --------------------------------------------------------------------------- fold without events


def test_fold_without_events_is_nan_with_reason(caplog: pytest.LogCaptureFixture) -> None:
    (tr_t, tr_e, _), (t, _e, r) = train_test(6)
    no_events = np.zeros_like(t, dtype=int)
    curve = survival_curve_from_hazards(
        np.full((t.size, 4), 0.2), np.r_[0.0, np.quantile(tr_t, [0.25, 0.5, 0.75]), np.inf]
    )
    with caplog.at_level(logging.WARNING, logger="duopath.evaluation"):
        out = survival_fold_metrics(tr_t, tr_e, t, no_events, r, curve)
    assert set(out) == {"c_harrell", "c_uno", "td_auc_mean", "ibs"}
    for name, res in out.items():
        assert math.isnan(res.value), name
        assert res.reason and "no events" in res.reason, (name, res.reason)
    assert "no events in the test fold" in caplog.text


def test_metric_result_refuses_nan_without_reason_and_value_with_reason() -> None:
    with pytest.raises(ValueError):
        MetricResult(float("nan"))
    with pytest.raises(ValueError):
        MetricResult(0.5, "why")
    assert MetricResult(float("nan"), "why").to_dict() == {"value": None, "reason": "why"}


# --------------------------------------------------------------------------- td-AUC, grid


def test_time_grid_is_interior_and_inside_training_follow_up() -> None:
    (tr_t, _tr_e, _), (t, e, _r) = train_test(7)
    grid = time_grid(tr_t, t, e)
    assert grid.ok and grid.times.size >= 2
    assert np.all(np.diff(grid.times) > 0)
    assert grid.times[0] >= max(t[e == 1].min(), tr_t.min())
    assert grid.times[-1] < min(t.max(), tr_t.max())
    assert grid.times[-1] <= np.quantile(t, 0.8)


@pytest.mark.parametrize("seed", [8, 9])
def test_td_auc_matches_sksurv_on_the_grid(seed: int) -> None:
    (tr_t, tr_e, _), (t, e, r) = train_test(seed)
    res = time_dependent_auc(tr_t, tr_e, t, e, r)
    grid = time_grid(tr_t, t, e).times
    auc, mean = cumulative_dynamic_auc(
        structured(tr_t, tr_e.astype(bool)), structured(t, e.astype(bool)), r, grid
    )
    np.testing.assert_allclose(res.times, grid)
    np.testing.assert_allclose(res.auc, auc, atol=1e-12)
    assert res.mean.value == pytest.approx(mean, abs=1e-12)


def test_td_auc_times_outside_training_range_are_nan_with_reason() -> None:
    (tr_t, tr_e, _), (t, e, r) = train_test(10)
    res = time_dependent_auc(tr_t, tr_e, t, e, r, times=[np.median(t), tr_t.max() * 1.5])
    assert math.isnan(res.mean.value) and "estimable window" in res.mean.reason


def test_test_follow_up_beyond_training_does_not_change_the_metrics() -> None:
    """A test patient followed past the last training time (sksurv refuses the whole fold) is
    administratively censored there; for grid times inside the training range that is exact."""
    (tr_t, tr_e, _), (t, e, r) = train_test(11)
    grid = time_grid(tr_t, t, e).times
    edges = np.r_[0.0, np.quantile(tr_t[tr_e == 1], [0.25, 0.5, 0.75]), np.inf]
    curve_of = lambda risk: survival_curve_from_hazards(  # noqa: E731
        np.clip(1 / (1 + np.exp(-risk))[:, None] * np.ones((1, 4)), 0, 1), edges
    )
    # B: the longest test patient has an event just inside training follow-up; A: far beyond it
    last = np.argmax(t)
    t_a, t_b, e_late = t.copy(), t.copy(), e.copy()
    e_late[last] = 1
    t_b[last] = (grid[-1] + tr_t.max()) / 2
    t_a[last] = tr_t.max() * 3
    with pytest.raises(ValueError):  # why the administrative censoring exists
        cumulative_dynamic_auc(
            structured(tr_t, tr_e.astype(bool)), structured(t_a, e_late.astype(bool)), r, grid
        )
    auc_a = time_dependent_auc(tr_t, tr_e, t_a, e_late, r, grid)
    auc_b = time_dependent_auc(tr_t, tr_e, t_b, e_late, r, grid)
    ref = cumulative_dynamic_auc(
        structured(tr_t, tr_e.astype(bool)), structured(t_b, e_late.astype(bool)), r, grid
    )
    np.testing.assert_allclose(auc_a.auc, ref[0], atol=1e-12)
    np.testing.assert_allclose(auc_b.auc, ref[0], atol=1e-12)
    assert auc_a.mean.value == pytest.approx(ref[1], abs=1e-12)
    ibs_a = integrated_brier_score(tr_t, tr_e, t_a, e_late, curve_of(r), grid)
    ibs_ref = sksurv_ibs(
        structured(tr_t, tr_e.astype(bool)), structured(t_b, e_late.astype(bool)), curve_of(r)(grid), grid
    )
    assert ibs_a.value == pytest.approx(ibs_ref, abs=1e-12)


# --------------------------------------------------------------------------- survival curves, IBS


def test_survival_curve_from_hazards_hand_computed() -> None:
    edges = [0.0, 1.0, 2.0, 3.0, np.inf]
    curve = survival_curve_from_hazards([[0.1, 0.2, 0.5, 1.0], [0.0, 0.0, 0.0, 0.0]], edges)
    s = curve([0.0, 0.5, 1.0, 1.5, 2.0, 2.99, 3.0, 100.0])
    # S drops at the END of each bin: S(1) = 0.9, S(2) = 0.9*0.8, S(3) = 0.9*0.8*0.5; the last
    # bin [3, inf) never ends, so its hazard of 1 never enters S at a finite time.
    np.testing.assert_allclose(s[0], [1.0, 1.0, 0.9, 0.9, 0.72, 0.72, 0.36, 0.36])
    np.testing.assert_allclose(s[1], 1.0)
    # predictions.parquet's surv_k = cumprod(1 - h) gives the same curve
    same = SurvivalCurve.from_survival_columns([[0.9, 0.72, 0.36, 0.0], [1, 1, 1, 1]], edges)
    np.testing.assert_allclose(same([0.5, 1.5, 2.5, 10.0]), curve([0.5, 1.5, 2.5, 10.0]))
    with pytest.raises(ValueError, match="K\\+1"):
        survival_curve_from_hazards([[0.1, 0.2]], edges)
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        survival_curve_from_hazards([[0.1, 1.2, 0.1, 0.1]], edges)


def test_ibs_matches_sksurv_with_curve_from_hazards() -> None:
    (tr_t, tr_e, _), (t, e, r) = train_test(12)
    edges = np.r_[0.0, np.quantile(tr_t[tr_e == 1], [0.25, 0.5, 0.75]), np.inf]
    hazards = 1 / (1 + np.exp(-(r[:, None] + np.array([[-1.0, -0.5, 0.0, 0.5]]))))
    curve = survival_curve_from_hazards(hazards, edges)
    grid = time_grid(tr_t, t, e).times
    expected = sksurv_ibs(
        structured(tr_t, tr_e.astype(bool)), structured(t, e.astype(bool)), curve(grid), grid
    )
    assert integrated_brier_score(tr_t, tr_e, t, e, curve).value == pytest.approx(expected, abs=1e-12)
    assert integrated_brier_score(tr_t, tr_e, t, e, curve(grid), grid).value == pytest.approx(
        expected, abs=1e-12
    )


def test_ibs_orders_perfect_informative_useless_predictors() -> None:
    (tr_t, tr_e, _), (t, e, _r) = train_test(13, n_test=120)
    grid = time_grid(tr_t, t, e).times
    # perfect: S_i(t) = 1 while the patient is event-free, 0 after its event; censored patients
    # are excluded by the IPCW weights once censored, so the Brier score is exactly 0
    perfect = np.where(grid[None, :] < t[:, None], 1.0, np.where(e[:, None] == 1, 0.0, 1.0))
    useless = np.full((t.size, grid.size), 0.5)
    ibs_perfect = integrated_brier_score(tr_t, tr_e, t, e, perfect, grid).value
    ibs_useless = integrated_brier_score(tr_t, tr_e, t, e, useless, grid).value
    assert ibs_perfect == pytest.approx(0.0, abs=1e-12)
    assert ibs_useless == pytest.approx(0.25, abs=0.05)
    # discrete-time: hazards pointing at each patient's true bin beat flat ones, which beat reversed
    edges = np.r_[0.0, np.quantile(tr_t[tr_e == 1], [0.25, 0.5, 0.75]), np.inf]
    true_bin = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, 3)
    oracle = np.where(np.arange(4)[None, :] == true_bin[:, None], 0.9, 0.05)
    reversed_ = np.where(np.arange(4)[None, :] == (3 - true_bin)[:, None], 0.9, 0.05)
    flat = np.full((t.size, 4), 0.3)
    score = {
        name: integrated_brier_score(tr_t, tr_e, t, e, survival_curve_from_hazards(h, edges)).value
        for name, h in {"oracle": oracle, "flat": flat, "reversed": reversed_}.items()
    }
    assert score["oracle"] < score["flat"] < score["reversed"], score


def test_evaluate_survival_predictions_frame_matches_functions() -> None:
    (tr_t, tr_e, _), (t, e, r) = train_test(14)
    edges = np.r_[0.0, np.quantile(tr_t[tr_e == 1], [0.25, 0.5, 0.75]), np.inf]
    hazards = 1 / (1 + np.exp(-(r[:, None] - 1.0)))
    surv = np.cumprod(1 - hazards * np.ones((1, 4)), axis=1)
    frame = pd.DataFrame(
        {
            "patient_id": [f"P{i}" for i in range(t.size)],
            "fold": 0,
            "risk": -surv.sum(1),
            "time": t,
            "event": e,
        }
    )
    for k in range(4):
        frame[f"surv_{k}"] = surv[:, k]
    out = evaluate_survival_predictions(frame, tr_t, tr_e, edges)
    curve = survival_curve_from_hazards(hazards * np.ones((1, 4)), edges)
    assert out["c_harrell"].value == harrell_c(t, e, -surv.sum(1)).value
    assert out["ibs"].value == pytest.approx(integrated_brier_score(tr_t, tr_e, t, e, curve).value, abs=1e-12)
    with pytest.raises(ValueError, match="bin edges"):
        evaluate_survival_predictions(frame, tr_t, tr_e)
    risk_only = survival_fold_metrics(tr_t, tr_e, t, e, r)
    assert math.isnan(risk_only["ibs"].value) and "risk score only" in risk_only["ibs"].reason


# --------------------------------------------------------------------------- classification


def _random_classification(seed: int, n: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes)) + 1.2 * np.eye(n_classes)[y]
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, proba


@pytest.mark.parametrize(("n_classes", "seed"), [(2, 0), (2, 1), (3, 2), (3, 3)])
def test_classification_matches_sklearn(n_classes: int, seed: int) -> None:
    y, p = _random_classification(seed, 90, n_classes)
    pred = p.argmax(1)
    out = classification_metrics(y, p)
    if n_classes == 2:
        auc = roc_auc_score(y, p[:, 1])
        sens = recall_score(y, pred, pos_label=1)
        spec = recall_score(y, pred, pos_label=0)
    else:
        auc = roc_auc_score(y, p, multi_class="ovr", average="macro")
        sens = recall_score(y, pred, average="macro")
        mcm = multilabel_confusion_matrix(y, pred)
        spec = np.mean(mcm[:, 0, 0] / (mcm[:, 0, 0] + mcm[:, 0, 1]))
    expected = {
        "auc": auc,
        "accuracy": accuracy_score(y, pred),
        "balanced_accuracy": balanced_accuracy_score(y, pred),
        "f1_macro": f1_score(y, pred, average="macro"),
        "sensitivity": sens,
        "specificity": spec,
    }
    for name, value in expected.items():
        assert out[name].value == pytest.approx(value, abs=1e-12), name


def test_classification_frame_with_string_labels_and_unpredicted_class() -> None:
    y, p = _random_classification(4, 60, 3)
    names = np.array(["LUAD", "LUSC", "normal"])
    p[:, 2] = 0.0  # 'normal' is never predicted
    p /= p.sum(1, keepdims=True)
    frame = pd.DataFrame(
        {"label": names[y], "prob_LUAD": p[:, 0], "prob_LUSC": p[:, 1], "prob_normal": p[:, 2]}
    )
    out = evaluate_classification_predictions(frame)
    pred = names[p.argmax(1)]
    assert out["f1_macro"].value == pytest.approx(
        f1_score(names[y], pred, average="macro", zero_division=0.0)
    )
    assert out["balanced_accuracy"].value == pytest.approx(balanced_accuracy_score(names[y], pred))
    assert out["auc"].value == pytest.approx(roc_auc_score(y, p, multi_class="ovr"))


def test_classification_single_class_fold_is_nan_with_reason() -> None:
    p = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    out = classification_metrics(["neg", "neg", "neg"], p, classes=["neg", "pos"])
    assert math.isnan(out["auc"].value) and "single class" in out["auc"].reason
    assert math.isnan(out["sensitivity"].value) and "no positive" in out["sensitivity"].reason
    assert out["specificity"].value == pytest.approx(2 / 3)
    assert out["accuracy"].value == pytest.approx(2 / 3)
    y3, p3 = _random_classification(5, 30, 3)
    keep = y3 != 2
    out3 = classification_metrics(y3[keep], p3[keep])
    assert math.isnan(out3["auc"].value) and "[2]" in out3["auc"].reason
    with pytest.raises(ValueError, match="sum to 1"):
        classification_metrics([0, 1], [[0.5, 0.6], [0.2, 0.8]])
    with pytest.raises(ValueError, match="not among"):
        classification_metrics([0, 5], [[0.4, 0.6], [0.2, 0.8]])


def test_binary_positive_class_is_configurable() -> None:
    y, p = _random_classification(6, 50, 2)
    flipped = classification_metrics(y, p, classes=[0, 1], positive_class=0)
    assert flipped["sensitivity"].value == pytest.approx(recall_score(y, p.argmax(1), pos_label=0))
    assert flipped["auc"].value == pytest.approx(roc_auc_score(y == 0, p[:, 0]))


# --------------------------------------------------------------------------- aggregation


def test_summarize_folds_mean_std_ddof1_and_reasons() -> None:
    rows = []
    values = {"A": [0.7, 0.8, 0.75, float("nan")], "B": [0.6, 0.62, 0.58, 0.61]}
    for model, vals in values.items():
        for fold, v in enumerate(vals):
            res = MetricResult(v) if not math.isnan(v) else MetricResult(v, "no events in the test fold")
            rows.append(long_table(model, fold, {"c_harrell": res}))
    long = pd.concat(rows, ignore_index=True)
    assert list(long.columns) == ["model", "fold", "metric", "value", "reason"]
    summary = summarize_folds(long).set_index("model")
    assert summary.loc["A", "mean"] == pytest.approx(np.mean([0.7, 0.8, 0.75]))
    assert summary.loc["A", "std"] == pytest.approx(np.std([0.7, 0.8, 0.75], ddof=1))
    assert summary.loc["A", "n_defined"] == 3 and summary.loc["A", "n_folds"] == 4
    assert "fold 3: no events" in summary.loc["A", "reasons"]
    assert summary.loc["B", "reasons"] == ""
    assert format_mean_std(0.71234, 0.0456) == "0.712 ± 0.046"
    assert format_mean_std(float("nan"), float("nan")) == "n/a"
    with pytest.raises(ValueError, match="duplicate"):
        summarize_folds(pd.concat([long, long.iloc[:1]]))


# --------------------------------------------------------------------------- paired comparison


def test_paired_fold_test_matches_scipy_and_refuses_mismatched_folds() -> None:
    a = {0: 0.71, 1: 0.74, 2: 0.69, 3: 0.77, 4: 0.73}
    b = {0: 0.65, 1: 0.70, 2: 0.70, 3: 0.71, 4: 0.66}
    res = paired_fold_test(a, b)
    va, vb = np.array(list(a.values())), np.array(list(b.values()))
    assert res.t_p.value == pytest.approx(stats.ttest_rel(va, vb).pvalue)
    assert res.wilcoxon_p.value == pytest.approx(stats.wilcoxon(va - vb).pvalue)
    assert res.mean_difference == pytest.approx(np.mean(va - vb))
    assert "n=5" in res.caveat and "0.0625" in res.caveat
    ci = stats.ttest_rel(va, vb).confidence_interval(0.95)
    assert (res.ci_low, res.ci_high) == pytest.approx((ci.low, ci.high))
    # order of the mapping does not matter, the fold keys do
    assert paired_fold_test(dict(reversed(list(a.items()))), b).t_p.value == pytest.approx(res.t_p.value)
    with pytest.raises(ValueError, match="different folds"):
        paired_fold_test(a, {k + 1: v for k, v in b.items()})
    same = paired_fold_test(a, a)
    assert math.isnan(same.t_p.value) and "identical" in same.t_p.reason
    assert math.isnan(same.ci_low) and math.isnan(same.ci_high)


def test_compare_models_from_long_table_drops_undefined_folds() -> None:
    rows = [
        long_table(m, f, {"auc": MetricResult(v)})
        for m, vals in {"T": [0.8, 0.82, 0.79], "S": [0.75, 0.8, 0.7]}.items()
        for f, v in enumerate(vals)
    ]
    rows.append(long_table("T", 3, {"auc": MetricResult(float("nan"), "single class")}))
    rows.append(long_table("S", 3, {"auc": MetricResult(0.7)}))
    res = compare_models(pd.concat(rows), "T", "S", "auc")
    assert res.folds == (0, 1, 2) and res.dropped == (3,)
    with pytest.raises(ValueError, match="different folds"):
        compare_models(pd.concat(rows[:-1]), "T", "S", "auc")


def _oof_frames(seed: int, n: int = 80) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    t, e, r = cohort(rng, n)
    ids = [f"TCGA-{i:03d}" for i in range(n)]
    a = pd.DataFrame({"patient_id": ids, "time": t, "event": e, "risk": r})
    b = a.assign(risk=r + rng.normal(scale=1.5, size=n))  # a noisier model
    return a, b


def test_bootstrap_is_seeded_and_contains_observed_difference() -> None:
    a, b = _oof_frames(20)
    res = bootstrap_pooled_difference(a, b, pooled_harrell_c, n_boot=200, seed=7)
    again = bootstrap_pooled_difference(a, b, pooled_harrell_c, n_boot=200, seed=7)
    other = bootstrap_pooled_difference(a, b, pooled_harrell_c, n_boot=200, seed=8)
    assert (res.ci_low, res.ci_high) == (again.ci_low, again.ci_high)
    assert (res.ci_low, res.ci_high) != (other.ci_low, other.ci_high)
    observed = harrell_c(a.time, a.event, a.risk).value - harrell_c(b.time, b.event, b.risk).value
    assert res.difference.value == pytest.approx(observed)
    assert res.ci_low < observed < res.ci_high
    assert res.n_valid == 200
    # rows of B matched by patient ID, not by position
    shuffled = bootstrap_pooled_difference(
        a, b.sample(frac=1.0, random_state=0), pooled_harrell_c, n_boot=200, seed=7
    )
    assert (shuffled.ci_low, shuffled.ci_high) == (res.ci_low, res.ci_high)


def test_bootstrap_refuses_different_patients() -> None:
    a, b = _oof_frames(21)
    with pytest.raises(ValueError, match="same patients"):
        bootstrap_pooled_difference(a, b.iloc[1:], pooled_harrell_c, n_boot=10)
    with pytest.raises(ValueError, match="more than once"):
        bootstrap_pooled_difference(a, pd.concat([b, b.iloc[:1]]), pooled_harrell_c, n_boot=10)


def test_bootstrap_of_pooled_classification_auc() -> None:
    y, p = _random_classification(22, 70, 2)
    ids = [f"P{i}" for i in range(70)]
    a = pd.DataFrame({"patient_id": ids, "label": y, "prob_0": p[:, 0], "prob_1": p[:, 1]})
    b = a.assign(prob_1=0.5, prob_0=0.5)  # a coin
    res = bootstrap_pooled_difference(a, b, pooled_classification_metric("auc"), n_boot=100, seed=1)
    assert res.difference.value == pytest.approx(roc_auc_score(y, p[:, 1]) - 0.5)
    assert res.ci_low > 0
    with pytest.raises(ValueError, match="unknown"):
        pooled_classification_metric("kappa")


# --------------------------------------------------------------------------- risk groups


def test_risk_groups_match_lifelines_and_use_training_threshold() -> None:
    rng = np.random.default_rng(30)
    _, _, tr_r = cohort(rng, 100)
    t, e, r = cohort(rng, 70)
    shifted = r + 1.0  # test risks all higher: a training cut keeps that, a test median would not
    res = risk_groups(tr_r, t, e, shifted)
    assert res.threshold == pytest.approx(np.median(tr_r))
    np.testing.assert_array_equal(res.high, shifted > np.median(tr_r))
    assert res.n_high > res.n_low
    hi = res.high
    p = logrank_test(t[hi], t[~hi], event_observed_A=e[hi], event_observed_B=e[~hi]).p_value
    assert res.logrank_p.value == pytest.approx(p)
    cph = CoxPHFitter().fit(pd.DataFrame({"time": t, "event": e, "high": hi.astype(int)}), "time", "event")
    assert res.hazard_ratio.value == pytest.approx(cph.hazard_ratios_["high"], rel=1e-6)
    assert res.hr_ci_low < res.hazard_ratio.value < res.hr_ci_high
    km = KaplanMeierFitter().fit(t[hi], e[hi])
    ref = km.survival_function_.iloc[1:, 0]  # lifelines starts with S(0) = 1
    np.testing.assert_allclose(res.km["high"].survival, ref.to_numpy(), atol=1e-12)
    np.testing.assert_allclose(res.km["high"].time, ref.index.to_numpy())
    assert res.km["high"].n_at_risk[0] == hi.sum()


def test_risk_group_without_events_gives_nan_hr_with_reason() -> None:
    t = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    e = np.array([1, 1, 1, 0, 0, 0])
    r = np.array([5.0, 4.0, 3.0, 0.0, -1.0, -2.0])  # all events in the high group
    res = risk_groups(np.array([0.0, 1.0, 2.0, 3.0]), t, e, r)
    assert res.logrank_p.ok
    assert math.isnan(res.hazard_ratio.value) and "low-risk group" in res.hazard_ratio.reason
    assert math.isnan(res.hr_ci_low)
    everyone_low = risk_groups(np.array([10.0, 11.0]), t, e, r)
    assert math.isnan(everyone_low.logrank_p.value) and "low-risk group" in everyone_low.logrank_p.reason
    assert everyone_low.km["high"] is None
