"""The planted-truth reference: its C-index / AUC on the same test folds as the models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sksurv.metrics import concordance_index_censored

from duopath.config import DemoConfig
from duopath.demo.truth import simulate_patients
from duopath.evaluation.reference import (
    TRUTH_MODEL,
    read_truth,
    summarize_reference,
    truth_reference,
    truth_reference_from_files,
)


@pytest.fixture(scope="module")
def truth() -> pd.DataFrame:
    return simulate_patients(DemoConfig(n_patients=60, n_sites=3, seed=5))


def _splits(truth: pd.DataFrame, folds: int = 3) -> pd.DataFrame:
    """Fold k tests the patients of site k+1; everyone else trains."""
    rows = []
    for k in range(folds):
        for pid, site in zip(truth["patient_id"], truth["site"], strict=True):
            rows.append((k, pid, "test" if site == f"S{k + 1}" else "train"))
    return pd.DataFrame(rows, columns=["fold", "patient_id", "role"])


def test_truth_scores_its_own_test_folds(truth: pd.DataFrame) -> None:
    ref = truth_reference(truth, _splits(truth))
    assert set(ref["model"]) == {TRUTH_MODEL}
    assert len(ref) == 6 and set(ref["fold"]) == {0, 1, 2}
    for fold in range(3):
        test = truth[truth["site"] == f"S{fold + 1}"]
        c = concordance_index_censored(test["event"].astype(bool), test["time"], test["linear_predictor"])[0]
        auc = roc_auc_score(test["label"] == "high", test["label_probability"])
        got = ref.set_index(["task", "fold"])["value"]
        assert got[("survival", fold)] == pytest.approx(c)
        assert got[("classification", fold)] == pytest.approx(auc)
    # the truth is informative on every fold but not perfect (Weibull draw, label noise)
    assert ref["value"].between(0.6, 0.99).all()


def test_scored_patients_restrict_a_fold(truth: pd.DataFrame) -> None:
    splits = _splits(truth)
    test0 = list(truth.loc[truth["site"] == "S1", "patient_id"])
    keep = test0[: len(test0) // 2]
    ref = truth_reference(truth, splits, tasks=["survival"], scored={("survival", 0): keep})
    sub = truth.set_index("patient_id").loc[keep]
    expected = concordance_index_censored(sub["event"].astype(bool), sub["time"], sub["linear_predictor"])[0]
    assert ref.loc[ref["fold"] == 0, "value"].item() == pytest.approx(expected)
    full = truth_reference(truth, splits, tasks=["survival"])
    later = ref["fold"] > 0
    assert (ref.loc[later, "value"].to_numpy() == full.loc[full["fold"] > 0, "value"].to_numpy()).all()


def test_undefined_fold_keeps_its_reason(truth: pd.DataFrame) -> None:
    one_class = truth.copy()
    one_class.loc[one_class["site"] == "S2", "label"] = "low"
    ref = truth_reference(one_class, _splits(truth), tasks=["classification"])
    row = ref[ref["fold"] == 1].iloc[0]
    assert np.isnan(row["value"]) and "single class" in row["reason"]
    summary = summarize_reference(ref)
    assert summary.loc[0, "n_defined"] == 2 and "fold 1" in summary.loc[0, "reasons"]


def test_summary_is_one_line_per_task(truth: pd.DataFrame) -> None:
    ref = truth_reference(truth, _splits(truth))
    summary = summarize_reference(ref).set_index("task")
    assert list(summary.index) == ["survival", "classification"]
    surv = ref[ref["task"] == "survival"]["value"]
    assert summary.loc["survival", "mean"] == pytest.approx(surv.mean())
    assert summary.loc["survival", "std"] == pytest.approx(surv.std(ddof=1))
    assert summary.loc["survival", "metric"] == "c_harrell"


def test_bad_inputs_name_the_problem(truth: pd.DataFrame, tmp_path: Path) -> None:
    old = tmp_path / "truth.csv"
    truth.drop(columns="label_probability").to_csv(old, index=False)
    with pytest.raises(ValueError, match=r"truth.csv.*label_probability.*regenerate"):
        read_truth(old)
    splits = _splits(truth)
    with pytest.raises(ValueError, match="not in the truth table"):
        truth_reference(truth.iloc[5:], splits)
    with pytest.raises(ValueError, match="no planted-truth score"):
        truth_reference(truth, splits, tasks=["grading"])
    good = tmp_path / "truth_ok.csv"
    truth.to_csv(good, index=False)
    splits.to_csv(tmp_path / "splits.csv", index=False)
    from_files = truth_reference_from_files(good, tmp_path / "splits.csv")
    pd.testing.assert_frame_equal(from_files, truth_reference(truth, splits), check_dtype=False)
