"""Is the demo's planted signal visible in its tile features? Checked on TRAINING patients only.

After the WSI half of the demo has run (``output/features/...``), this fits simple
histology-only read-outs on the mean tile feature of each patient (10x and 20x means side by
side) with a ridge / logistic model, scored by 5-fold cross-validation *inside the training
patients of outer fold 0* (the split table's fold-0 ``train``/``val`` rows): the fold-0 test
patients are never read, and no model of the pipeline is trained. It answers "could a
histology-only model learn the TME factor, the tumour factor, the hazard and the grade from
these tiles?", next to what the planted truth itself reaches on the same patients (the
ceiling): the demo is sized so that the answer is yes, without looking at any test fold.

Usage: ``.venv/bin/python bench/demo_signal.py [--output output] [--cohort demo]``; writes
``bench/results/demo_signal.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from sklearn.linear_model import LogisticRegressionCV, RidgeCV
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.metrics import concordance_index_censored

log = logging.getLogger("bench")
ALPHAS = np.logspace(-1, 5, 25)


def patient_features(features_dir: Path, sheet: pd.DataFrame) -> pd.DataFrame:
    """Mean tile feature per patient and magnification (over all its slides), side by side.

    A slide without tiles (an ``empty`` store: too little tissue) contributes nothing, as in
    training; every demo patient keeps at least one slide with tiles.
    """
    rows = {}
    for pid, slides in sheet.groupby("patient_id")["slide_id"]:
        parts = []
        for mag in ("10x", "20x"):
            stores = [zarr.open_group(str(features_dir / f"{s}.zarr"), mode="r") for s in slides]
            feats = [np.asarray(g[mag]["features"], dtype=np.float32) for g in stores if mag in g]
            parts.append(np.concatenate(feats).mean(axis=0))
        rows[pid] = np.concatenate(parts)
    return pd.DataFrame.from_dict(rows, orient="index")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--output", type=Path, default=Path("output"))
    ap.add_argument("--cohort", default="demo")
    ap.add_argument("--encoder", default="efficientnet_lite0")
    ap.add_argument("--out", type=Path, default=Path("bench/results/demo_signal.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    out = args.output
    sheet = pd.read_csv(out / "cohorts" / args.cohort / "samples.csv", keep_default_na=False)
    truth = pd.read_csv(out / "demo" / args.cohort / "truth.csv", keep_default_na=False)
    truth = truth.set_index("patient_id")
    splits = pd.read_csv(out / "splits" / f"{args.cohort}.csv")
    train_ids = sorted(splits[(splits["fold"] == 0) & (splits["role"] != "test")]["patient_id"].unique())
    features_dir = out / "features" / args.cohort / args.encoder
    x = patient_features(features_dir, sheet[sheet["patient_id"].isin(train_ids)])
    x = x.loc[train_ids]
    t = truth.loc[train_ids]
    cv = KFold(5, shuffle=True, random_state=0)
    ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS))
    result: dict = {"n_train_patients": len(train_ids), "n_features": x.shape[1]}
    for target in ("tme_factor", "tumour_factor", "linear_predictor"):
        pred = cross_val_predict(ridge, x.to_numpy(), t[target].to_numpy(), cv=cv)
        result[f"cv_r_{target}"] = round(float(np.corrcoef(pred, t[target])[0, 1]), 3)
        if target == "linear_predictor":
            event, time = t["event"].astype(bool).to_numpy(), t["time"].to_numpy()
            result["cv_c_index_histology"] = round(float(concordance_index_censored(event, time, pred)[0]), 3)
            result["c_index_truth_lp"] = round(
                float(concordance_index_censored(event, time, t["linear_predictor"].to_numpy())[0]), 3)
    y = (t["label"] == "high").to_numpy()
    logit = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=np.logspace(-4, 1, 12), max_iter=2000))
    prob = cross_val_predict(logit, x.to_numpy(), y, cv=cv, method="predict_proba")[:, 1]
    result["cv_auc_histology"] = round(float(roc_auc_score(y, prob)), 3)
    result["auc_truth_probability"] = round(float(roc_auc_score(y, t["label_probability"])), 3)
    for k, v in result.items():
        log.info("%-26s %s", k, v)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
