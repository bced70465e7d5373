"""Splits: patient-level, every patient tested once, no patient in two roles, site-disjoint."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from duopath.training.splits import SplitError, fold_patients, make_splits, patient_table


@st.composite
def cohorts(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(12, 80))
    n_sites = draw(st.integers(1, 9))
    sites = draw(st.lists(st.integers(0, n_sites - 1), min_size=n, max_size=n))
    strata = draw(st.lists(st.sampled_from(["0", "1"]), min_size=n, max_size=n))
    return pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(n)],
                         "site": [f"S{s}" for s in sites], "stratum": strata})


@settings(max_examples=40, deadline=None)
@given(cohorts(), st.integers(2, 5), st.integers(0, 10_000))
def test_split_invariants(patients: pd.DataFrame, folds: int, seed: int) -> None:
    table, info = make_splits(patients, folds=folds, val_fraction=0.2, seed=seed)
    assert info.folds == folds
    # each patient is a test patient in exactly one fold
    test = table[table["role"] == "test"]
    assert sorted(test["patient_id"]) == sorted(patients["patient_id"])
    for k in range(folds):
        fold = table[table["fold"] == k]
        assert not fold["patient_id"].duplicated().any(), "a patient in two roles of one fold"
        assert set(fold["patient_id"]) == set(patients["patient_id"])
        assert len(fold_patients(table, k, "val")) >= 1
        if info.site_disjoint:
            test_sites = set(fold.loc[fold["role"] == "test", "site"])
            train_sites = set(fold.loc[fold["role"] != "test", "site"])
            assert not test_sites & train_sites
    again, _ = make_splits(patients, folds=folds, val_fraction=0.2, seed=seed)
    pd.testing.assert_frame_equal(table, again)


def test_site_disjoint_when_enough_sites() -> None:
    patients = pd.DataFrame({"patient_id": [f"P{i}" for i in range(60)],
                             "site": [f"S{i % 6}" for i in range(60)],
                             "stratum": [str(i % 2) for i in range(60)]})
    _, info = make_splits(patients, folds=3, val_fraction=0.2, seed=1)
    assert info.site_disjoint
    _, info = make_splits(patients.assign(site="S0"), folds=3, val_fraction=0.2, seed=1)
    assert not info.site_disjoint and "NOT site-disjoint" in info.reason
    with pytest.raises(SplitError, match="needs ≥ 3 sites"):
        make_splits(patients.assign(site="S0"), folds=3, val_fraction=0.2, seed=1,
                    site_disjoint="yes")


def test_patient_table_pools_slides() -> None:
    sheet = pd.DataFrame({"patient_id": ["A", "A", "B"], "slide_id": ["a1", "a2", "b1"],
                          "rna_sample_id": "", "site": ["X", "X", "Y"], "event": [1, 1, 0],
                          "label": ["", "", ""]})
    pt = patient_table(sheet, "survival")
    assert pt["patient_id"].tolist() == ["A", "B"] and pt["stratum"].tolist() == ["1", "0"]


def test_too_few_patients() -> None:
    patients = pd.DataFrame({"patient_id": ["a", "b", "c"], "site": "", "stratum": "1"})
    with pytest.raises(SplitError, match="cannot make 5 folds"):
        make_splits(patients, folds=5, val_fraction=0.2, seed=0)


def test_tiny_cohort_still_has_train_val_test() -> None:
    patients = pd.DataFrame({"patient_id": list("abcd"), "site": ["S1", "S2", "S1", "S2"],
                             "stratum": ["1", "0", "1", "0"]})
    table, _ = make_splits(patients, folds=2, val_fraction=0.2, seed=0)
    for k in range(2):
        assert len(fold_patients(table, k, "val")) == 1
        assert len(fold_patients(table, k, "train")) >= 1


@st.composite
def mixed_cohorts(draw: st.DrawFn) -> pd.DataFrame:
    """Cohorts where some patients lack RNA (or a slide), every (event, modalities) group >= 5."""
    groups = {(e, m): draw(st.integers(5, 25)) for e in ("0", "1") for m in ("slide+rna", "slide")}
    if draw(st.booleans()):
        groups |= {(e, "rna"): draw(st.integers(5, 12)) for e in ("0", "1")}
    rows = [(e, m) for (e, m), n in groups.items() for _ in range(n)]
    order = draw(st.permutations(range(len(rows))))
    return pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(len(rows))], "site": "",
                         "stratum": [rows[i][0] for i in order], "modalities": [rows[i][1] for i in order]})


@settings(max_examples=30, deadline=None)
@given(mixed_cohorts(), st.integers(2, 5), st.integers(0, 10_000))
def test_mixed_cohorts_spread_each_modality_group_over_the_folds(patients: pd.DataFrame, folds: int,
                                                                  seed: int) -> None:
    """Without it, one fold can test twice the RNA-less patients of another: the teacher's test
    set (patients with both) then shrinks in that fold only."""
    table, info = make_splits(patients, folds=folds, val_fraction=0.2, seed=seed, site_disjoint="no")
    assert info.strata == "outcome and modalities"
    test = table[table["role"] == "test"].merge(patients[["patient_id", "modalities"]], on="patient_id")
    per_fold = test.groupby(["modalities", "fold"]).size().unstack(fill_value=0)
    # each (event, modalities) stratum differs by <= 1 patient between folds; 2 events
    assert (per_fold.max(axis=1) - per_fold.min(axis=1)).max() <= 2, per_fold


def test_a_small_modality_group_falls_back_to_the_outcome() -> None:
    patients = pd.DataFrame({"patient_id": [f"P{i}" for i in range(40)], "site": "",
                             "stratum": [str(i % 2) for i in range(40)],
                             "modalities": ["slide"] * 2 + ["slide+rna"] * 38})
    table, info = make_splits(patients, folds=5, val_fraction=0.2, seed=3, site_disjoint="no")
    assert info.strata.startswith("outcome (")
    plain, _ = make_splits(patients.drop(columns="modalities"), folds=5, val_fraction=0.2, seed=3,
                           site_disjoint="no")
    pd.testing.assert_frame_equal(table, plain)  # exactly the outcome-stratified folds


def test_patient_table_reads_the_listed_modalities() -> None:
    sheet = pd.DataFrame({"patient_id": ["A", "A", "B", "C"], "slide_id": ["a1", "a2", "b1", ""],
                          "rna_sample_id": ["", "A-R", "", "C-R"], "site": "", "event": [1, 1, 0, 1],
                          "label": ""})
    pt = patient_table(sheet, "survival")
    assert pt.set_index("patient_id")["modalities"].to_dict() == {"A": "slide+rna", "B": "slide", "C": "rna"}
