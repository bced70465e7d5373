"""Collecting a cohort's results tree into metrics / summary / comparison tables.

The fake tree built here (also used by ``test_report.py``) has the layout and file contents the
trainer writes (``duopath.training.outputs``), with a PLANTED signal: model ``good`` ranks
patients by the hidden factor that drives their hazard and class, ``good_noisy`` (an ablation of
``good``) sees it through noise, ``weak`` sees nothing and predicts a risk only (no survival
curves). A collect step that mixed up patients, folds or training outcomes could not keep
``good`` ahead.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sksurv.metrics import concordance_index_ipcw

from duopath.evaluation.cohort_tables import load_cohort_tables
from duopath.evaluation.collect import (
    COMPARISON_COLUMNS,
    METRICS_COLUMNS,
    SUMMARY_COLUMNS,
    TASK_METRICS,
    discover_models,
    evaluate_cohort,
    read_table,
    write_evaluation,
)
from duopath.evaluation.survival import uno_tau

MODELS = ("good", "good_noisy", "weak")
TASKS = ("survival", "classification")
FOLDS = 3
N_PATIENTS = 36
CLASSES = ("a", "b", "c")
FAILED_SLIDE = "P003-02"
FAILED_ERROR = "no mpp in the slide metadata and no override"


@dataclass(frozen=True)
class FakeCohort:
    root: Path  # output_dir
    cohort: str

    @property
    def results(self) -> Path:
        return self.root / "results" / self.cohort

    @property
    def sheet(self) -> Path:
        return self.root / "cohorts" / self.cohort / "samples.csv"

    @property
    def splits(self) -> Path:
        return self.root / "splits" / f"{self.cohort}.csv"

    @property
    def splits_info(self) -> Path:
        return self.root / "splits" / f"{self.cohort}.json"

    @property
    def wsi_summary(self) -> Path:
        return self.root / "qc" / self.cohort / "wsi_summary.csv"

    def fold_dir(self, task: str, model: str, fold: int) -> Path:
        return self.results / task / model / f"fold{fold}"


def _risk(model: str, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = {"good": 0.3, "good_noisy": 1.5}.get(model)
    return rng.normal(size=x.size) if noise is None else x + rng.normal(scale=noise, size=x.size)


def _survival_frame(model: str, p: pd.DataFrame, edges: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """Discrete-time outputs: hazards rise with the model's score; risk = -sum S (the trainer's rule)."""
    score = _risk(model, p["x"].to_numpy(), rng)
    frame = pd.DataFrame(
        {
            "patient_id": p.index,
            "fold": p["fold_"].to_numpy(),
            "time": p["time"].to_numpy(),
            "event": p["event"].to_numpy(float),
            "label": p["label"].to_numpy(),
        }
    )
    k = edges.size - 1
    hazards = 1.0 / (1.0 + np.exp(-(score[:, None] + np.linspace(-1.5, 0.5, k)[None, :])))
    surv = np.cumprod(1.0 - hazards, axis=1)
    frame.insert(2, "risk", -surv.sum(axis=1))
    if model != "weak":  # the baseline is risk-only: IBS and calibration must say n/a, not 0
        for j in range(k):
            frame[f"surv_{j}"] = surv[:, j]
    return frame


def _classification_frame(model: str, p: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    score = _risk(model, p["x"].to_numpy(), rng)
    logits = np.stack([-2.0 * score, np.zeros_like(score), 2.0 * score], axis=1)
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    frame = pd.DataFrame(
        {
            "patient_id": p.index,
            "fold": p["fold_"].to_numpy(),
            "risk": np.nan,
            "time": p["time"].to_numpy(),
            "event": p["event"].to_numpy(float),
            "label": p["label"].to_numpy(),
        }
    )
    for j, c in enumerate(CLASSES):
        frame[f"prob_{c}"] = prob[:, j]
    frame["pred_label"] = [CLASSES[i] for i in prob.argmax(axis=1)]
    return frame


def build_fake_cohort(root: Path, cohort: str = "fake", seed: int = 0) -> FakeCohort:
    """Sample sheet, WSI summary (one failed slide), splits (+ JSON) and 3 models × 3 folds × 2 tasks."""
    rng = np.random.default_rng(seed)
    fc = FakeCohort(root, cohort)
    ids = [f"P{i:03d}" for i in range(N_PATIENTS)]
    x = rng.normal(size=N_PATIENTS)
    t_event = rng.exponential(24.0 * np.exp(-2.0 * x))
    t_cens = rng.uniform(10.0, 80.0, size=N_PATIENTS)
    patients = pd.DataFrame(
        {
            "site": [f"S{i % 6}" for i in range(N_PATIENTS)],
            "x": x,
            "time": np.round(np.minimum(t_event, t_cens), 2),
            "event": (t_event <= t_cens).astype(int),
            "label": np.array(CLASSES)[np.digitize(x, np.quantile(x, [1 / 3, 2 / 3]))],
            "fold_": [(i % 6) // 2 for i in range(N_PATIENTS)],  # two sites per test fold: site-disjoint
        },
        index=pd.Index(ids, name="patient_id"),
    )

    rows = []
    for pid, r in patients.iterrows():
        n_slides = 2 if pid in ("P003", "P010") else 1
        for s in range(n_slides):
            rows.append(
                {
                    "patient_id": pid,
                    "slide_id": f"{pid}-{s + 1:02d}",
                    "slide_path": f"/slides/{pid}.svs",
                    "rna_sample_id": pid,
                    "site": r["site"],
                    "label": r["label"],
                    "time": r["time"],
                    "event": r["event"],
                    "mpp": "",
                }
            )
    sheet = pd.DataFrame(rows)
    fc.sheet.parent.mkdir(parents=True)
    sheet.to_csv(fc.sheet, index=False)

    wsi = pd.DataFrame(
        {
            "slide_id": sheet["slide_id"],
            "status": "ok",
            "error": "",
            "slide_mpp": 0.5,
            "mpp_source": "openslide.mpp-x",
            "tissue_area_mm2": 1.0,
            "tiles_10x": 20,
            "tiles_20x": 80,
        }
    )
    bad = wsi["slide_id"] == FAILED_SLIDE
    wsi.loc[bad, ["status", "error", "tiles_10x", "tiles_20x"]] = ["failed", FAILED_ERROR, 0, 0]
    fc.wsi_summary.parent.mkdir(parents=True)
    wsi.to_csv(fc.wsi_summary, index=False)

    split_rows = []
    for k in range(FOLDS):
        rest = [p for p in ids if patients.at[p, "fold_"] != k]
        for pid in ids:
            role = (
                "test" if patients.at[pid, "fold_"] == k else ("val" if rest.index(pid) % 5 == 0 else "train")
            )
            split_rows.append(
                {
                    "fold": k,
                    "patient_id": pid,
                    "role": role,
                    "site": patients.at[pid, "site"],
                    "stratum": str(patients.at[pid, "event"]),
                }
            )
    splits = pd.DataFrame(split_rows)
    fc.splits.parent.mkdir(parents=True)
    splits.to_csv(fc.splits, index=False)
    fc.splits_info.write_text(
        json.dumps({"folds": FOLDS, "site_disjoint": True, "reason": "6 sites ≥ 3 folds", "seed": 7})
    )

    for task in TASKS:
        for model in MODELS:
            for k in range(FOLDS):
                d = fc.fold_dir(task, model, k)
                d.mkdir(parents=True)
                roles = splits[splits["fold"] == k].set_index("patient_id")["role"]
                train = patients.loc[roles.index[roles == "train"]]
                edges = np.concatenate(
                    [[0.0], np.quantile(train.loc[train["event"] == 1, "time"], [0.25, 0.5, 0.75]), [np.inf]]
                )
                frames = {}
                for role in ("train", "val", "test"):
                    sel = patients.loc[roles.index[roles == role]].assign(fold_=k)
                    frames[role] = (
                        _survival_frame(model, sel, edges, rng)
                        if task == "survival"
                        else _classification_frame(model, sel, rng)
                    )
                frames["test"].assign(model=model).to_parquet(d / "predictions.parquet")
                inner = pd.concat([frames["train"].assign(role="train"), frames["val"].assign(role="val")])
                inner.assign(model=model).to_parquet(d / "inner_predictions.parquet")
                epochs = np.arange(6)
                pd.DataFrame(
                    {
                        "epoch": epochs,
                        "lr": 1e-3,
                        "train_loss": 2.0 / (1 + epochs),
                        "val_loss": 1.5 - 0.1 * epochs + 0.05 * (epochs == 5),
                        "val_metric": 0.5 + 0.05 * epochs,
                        "improved": True,
                        "selected": epochs == 4,
                    }
                ).to_csv(d / "train_log.csv", index=False)
                info = {
                    "cohort": cohort,
                    "model": model,
                    "fold": k,
                    "task": task,
                    "seed": 1337,
                    "encoder": "efficientnet_lite0",
                    "magnifications": ["10x", "20x"],
                    "selection": "val_loss",
                    "time_bins": [float(e) for e in edges[:-1]] + [None] if task == "survival" else None,
                    "class_names": list(CLASSES) if task == "classification" else None,
                    "test": {"n": len(frames["test"])},
                }
                (d / "metrics.json").write_text(json.dumps(info))
    return fc


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> FakeCohort:
    return build_fake_cohort(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def evaluation(fake: FakeCohort):
    tables = load_cohort_tables(fake.sheet, fake.splits)
    return evaluate_cohort(fake.results, tables, list(MODELS), n_boot=200, seed=3)


def _copy_tree(fake: FakeCohort, dest: Path) -> FakeCohort:
    import shutil

    shutil.copytree(fake.root, dest)
    return FakeCohort(dest, fake.cohort)


# --------------------------------------------------------------------------- tests


def test_metrics_table_has_every_model_fold_metric_and_reasons_exactly_for_nan(evaluation) -> None:
    m = evaluation.metrics
    assert list(m.columns) == list(METRICS_COLUMNS)
    expected = {
        (t, mo, k, me)
        for t in TASKS
        for mo in MODELS
        for k in range(FOLDS)
        for me in TASK_METRICS[t]
    }
    got = set(zip(m["task"], m["model"], m["fold"], m["metric"], strict=True))
    assert got == expected and len(m) == len(expected)
    nan = m["value"].isna()
    assert m.loc[nan, "reason"].map(lambda r: isinstance(r, str) and len(r) > 0).all()
    assert m.loc[~nan, "reason"].isna().all()


def test_risk_only_model_has_nan_ibs_with_reason_not_zero(evaluation) -> None:
    m = evaluation.metrics
    ibs = m[(m["model"] == "weak") & (m["metric"] == "ibs")]
    assert ibs["value"].isna().all()
    assert ibs["reason"].str.contains("risk score only").all()
    s = evaluation.summary.set_index(["task", "model", "metric"]).loc[("survival", "weak", "ibs")]
    assert s["n_defined"] == 0 and math.isnan(s["mean"]) and "risk score only" in s["reasons"]
    # every other metric of the good model is defined
    good = m[(m["model"] == "good")]
    assert good["value"].notna().all()


def test_planted_signal_survives_collection(evaluation) -> None:
    s = evaluation.summary.set_index(["task", "model", "metric"])["mean"]
    assert s[("survival", "good", "c_harrell")] > 0.7 > s[("survival", "weak", "c_harrell")]
    assert s[("survival", "good", "c_harrell")] > s[("survival", "good_noisy", "c_harrell")]
    assert s[("classification", "good", "auc")] > 0.8 > s[("classification", "weak", "auc")]


def test_uno_c_uses_the_split_tables_training_patients(fake: FakeCohort, evaluation) -> None:
    """Recompute fold 1's Uno C with scikit-survival from the TRAIN role only (not val, not test)."""
    sheet = (
        pd.read_csv(fake.sheet, dtype={"patient_id": str})
        .drop_duplicates("patient_id")
        .set_index("patient_id")
    )
    sp = pd.read_csv(fake.splits, dtype={"patient_id": str})
    train = sheet.loc[sp[(sp["fold"] == 1) & (sp["role"] == "train")]["patient_id"]]
    pred = pd.read_parquet(fake.fold_dir("survival", "good", 1) / "predictions.parquet")
    y_tr = np.array(
        list(zip(train["event"].astype(bool), train["time"], strict=True)), dtype=[("e", bool), ("t", float)]
    )
    y_te = np.array(
        list(zip(pred["event"].astype(bool), pred["time"], strict=True)), dtype=[("e", bool), ("t", float)]
    )
    expected = concordance_index_ipcw(y_tr, y_te, pred["risk"].to_numpy(), tau=uno_tau(train["time"]))[0]
    m = evaluation.metrics
    got = m[(m["model"] == "good") & (m["fold"] == 1) & (m["metric"] == "c_uno")]["value"].item()
    assert got == pytest.approx(expected, rel=1e-12)


def test_comparisons_against_the_main_model(evaluation) -> None:
    c = evaluation.comparisons
    assert list(c.columns) == list(COMPARISON_COLUMNS)
    assert set(c["reference"]) == {"good"} and "good" not in set(c["model"])
    paired = c[c["test"].isin(["paired_t", "wilcoxon"])]
    assert set(zip(paired["task"], paired["model"], paired["metric"], paired["test"], strict=True)) == {
        (t, mo, me, te)
        for t in TASKS
        for mo in ("good_noisy", "weak")
        for me in TASK_METRICS[t]
        if me != "ibs_km"  # the Kaplan–Meier null is the same for every model: not compared
        for te in ("paired_t", "wilcoxon")
    }
    boot = c[(c["test"] == "bootstrap") & (c["model"] == "weak") & (c["task"] == "survival")].iloc[0]
    assert boot["metric"] == "c_harrell" and boot["n"] == N_PATIENTS
    assert boot["difference"] == pytest.approx(boot["value"] - boot["reference_value"])
    assert boot["ci_low"] <= boot["difference"] <= boot["ci_high"] < 0  # weak is clearly worse
    # the paired t row carries the fold interval around the same mean difference; Wilcoxon none
    t_row = paired[(paired["model"] == "weak") & (paired["metric"] == "c_harrell")
                   & (paired["test"] == "paired_t") & (paired["task"] == "survival")].iloc[0]
    assert t_row["ci_low"] < t_row["difference"] < t_row["ci_high"]
    assert paired[paired["test"] == "wilcoxon"]["ci_low"].isna().all()
    # the IBS comparison with the risk-only model is undefined on every fold, and says why
    ibs = c[(c["model"] == "weak") & (c["metric"] == "ibs")]
    assert ibs["p_value"].isna().all() and ibs["n"].eq(0).all()
    assert ibs["reason"].str.contains("0 fold").all()


def test_missing_fold_is_nan_with_reason_and_left_out_of_the_paired_tests(
    fake: FakeCohort, tmp_path: Path
) -> None:
    fc = _copy_tree(fake, tmp_path / "copy")
    (fc.fold_dir("survival", "weak", 1) / "predictions.parquet").unlink()
    (fc.fold_dir("survival", "good_noisy", 2) / "metrics.json").unlink()  # killed before metrics.json
    ev = evaluate_cohort(
        fc.results, load_cohort_tables(fc.sheet, fc.splits), list(MODELS), ["survival"], n_boot=50
    )
    m = ev.metrics
    gone = m[(m["model"] == "weak") & (m["fold"] == 1)]
    assert gone["value"].isna().all() and gone["reason"].str.contains("no predictions.parquet").all()
    half = m[(m["model"] == "good_noisy") & (m["fold"] == 2)]
    assert half["value"].isna().all() and half["reason"].str.contains("incomplete fold").all()
    c = ev.comparisons
    row = c[(c["model"] == "weak") & (c["metric"] == "c_harrell") & (c["test"] == "wilcoxon")].iloc[0]
    assert row["n"] == 2 and "folds [1] left out" in row["reason"]
    boot = c[(c["model"] == "weak") & (c["test"] == "bootstrap")].iloc[0]
    assert boot["n"] == N_PATIENTS - 12 and "predicted by only one" in boot["reason"]


def test_prediction_of_a_non_test_patient_is_an_error(fake: FakeCohort, tmp_path: Path) -> None:
    fc = _copy_tree(fake, tmp_path / "copy")
    path = fc.fold_dir("survival", "good", 0) / "predictions.parquet"
    pred = pd.read_parquet(path)
    sp = pd.read_csv(fc.splits, dtype={"patient_id": str})
    train_patient = sp[(sp["fold"] == 0) & (sp["role"] == "train")]["patient_id"].iloc[0]
    pred.loc[0, "patient_id"] = train_patient
    pred.to_parquet(path)
    with pytest.raises(ValueError, match=f"{train_patient}.*not test patients of fold 0"):
        evaluate_cohort(
            fc.results, load_cohort_tables(fc.sheet, fc.splits), ["good"], ["survival"], n_boot=10
        )


def test_unknown_model_is_an_error_not_a_row_of_nans(fake: FakeCohort) -> None:
    tables = load_cohort_tables(fake.sheet, fake.splits)
    with pytest.raises(ValueError, match=r"no results for model 'teacher'.*found"):
        evaluate_cohort(fake.results, tables, ["good", "teacher"], ["survival"], n_boot=10)


def test_default_models_are_the_directories_found(fake: FakeCohort) -> None:
    assert discover_models(fake.results, "survival") == sorted(MODELS)
    assert discover_models(fake.results, "nothing") == []


def test_trainer_score_disagreeing_with_the_predictions_is_logged(
    fake: FakeCohort, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fc = _copy_tree(fake, tmp_path / "copy")
    info_path = fc.fold_dir("survival", "good", 2) / "metrics.json"
    info = json.loads(info_path.read_text())
    info["test"]["c_harrell"] = 0.123
    info_path.write_text(json.dumps(info))
    with caplog.at_level(logging.WARNING, logger="duopath.evaluation.collect"):
        evaluate_cohort(
            fc.results, load_cohort_tables(fc.sheet, fc.splits), ["good"], ["survival"], n_boot=10
        )
    assert any(
        "fold 2: c_harrell recomputed" in r.getMessage() and "0.123" in r.getMessage() for r in caplog.records
    )


def test_tables_survive_the_csv_round_trip(evaluation, tmp_path: Path) -> None:
    paths = [tmp_path / n for n in ("metrics.csv", "summary.csv", "comparisons.csv")]
    write_evaluation(evaluation, *paths)
    for path, cols, frame in zip(
        paths,
        (METRICS_COLUMNS, SUMMARY_COLUMNS, COMPARISON_COLUMNS),
        (evaluation.metrics, evaluation.summary, evaluation.comparisons),
        strict=True,
    ):
        back = read_table(path, cols)
        assert len(back) == len(frame)
        num = [c for c in ("value", "mean", "std", "difference", "p_value") if c in cols]
        np.testing.assert_allclose(back[num].to_numpy(float), frame[num].to_numpy(float), rtol=1e-12)
        for col in ("reason", "reasons"):
            if col in cols:
                assert (back[col] == frame[col].fillna("")).all()


def test_slides_disagreeing_on_an_outcome_are_refused(fake: FakeCohort, tmp_path: Path) -> None:
    sheet = pd.read_csv(fake.sheet, dtype=str, keep_default_na=False)
    sheet.loc[sheet["slide_id"] == "P010-02", "time"] = "99"
    bad = tmp_path / "samples.csv"
    sheet.to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"P010.*disagree on 'time'"):
        load_cohort_tables(bad, fake.splits)


def test_a_survival_only_model_is_scored_on_survival_only(fake: FakeCohort, tmp_path: Path) -> None:
    """CoxNet has no classification folds (duopath.modalities.MODEL_TASKS): the evaluation of a
    two-task cohort scores it on survival and does not look for it elsewhere."""
    import shutil

    fc = _copy_tree(fake, tmp_path / "copy")
    shutil.copytree(fc.results / "survival" / "weak", fc.results / "survival" / "coxnet")
    ev = evaluate_cohort(fc.results, load_cohort_tables(fc.sheet, fc.splits), [*MODELS, "coxnet"],
                         list(TASKS), n_boot=10)
    tasks_of_coxnet = set(ev.metrics.loc[ev.metrics["model"] == "coxnet", "task"])
    assert tasks_of_coxnet == {"survival"}
    assert set(ev.metrics.loc[ev.metrics["task"] == "classification", "model"]) == set(MODELS)
