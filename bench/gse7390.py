"""GSE7390 (real breast-cancer microarray, RNA only): C-index and IBS of the SNN and the CoxNet
against the Kaplan–Meier null, over repeated cross-validation with the project's split protocol.

Why: the issue-14 finding was that the RNA-only SNN ranks patients well but its survival curves
lose to a Kaplan–Meier curve that ignores every patient (IBS). This bench measures, on real
data that ship with scikit-survival (``duopath.demo.gse7390``: 198 patients, 51 events, 76
probe sets, log2 scale), the two RNA-only models of the DAG run by the DAG's own code:

* the SNN (``training.run.run_folds_files``, the package-default ``teacher:`` protocol and
  ``baselines:`` architecture), the CoxNet (``training.coxnet_fold``: alpha by inner CV within
  the training patients, its Breslow curve at the bin ends);
* scored by the report's own code (``evaluation.collect.evaluate_cohort``) on the test folds:
  C-index, IBS of the model's own curves (``ibs``), with a constant hazard within bins
  (``ibs_interp``), recalibrated on the inner VALIDATION split (``ibs_recal``), and the
  Kaplan–Meier null of the training patients (``ibs_km``) on the same time grid;
* the same IBS variants on each fold's inner VALIDATION patients (``val_*``): what a choice
  between curve readings may look at (never the test folds).

Every setting is fixed before the run (package defaults; nothing chosen on test folds).
Usage: ``python bench/gse7390.py --repeats 3 --folds 5`` (writes bench/results/gse7390.json).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from duopath.cohort import read_sample_sheet
from duopath.config import BaselinesConfig, CohortConfig, RnaConfig, TeacherConfig
from duopath.demo.gse7390 import write_gse7390
from duopath.evaluation.calibration import calibration_metrics
from duopath.evaluation.cohort_tables import load_cohort_tables
from duopath.evaluation.collect import FoldRun, evaluate_cohort
from duopath.evaluation.curves import SurvivalCurve
from duopath.evaluation.metrics import survival_columns, survival_fold_metrics
from duopath.io import write_json
from duopath.rna.build import build_rna
from duopath.training.coxnet_fold import run_coxnet_folds
from duopath.training.run import FoldTarget, model_spec, run_folds_files
from duopath.training.splits import make_splits

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench.gse7390")
METRICS = ("c_harrell", "c_uno", "ibs", "ibs_interp", "ibs_recal", "ibs_km")
VAL_METRICS = ("val_ibs", "val_ibs_interp", "val_ibs_km")
MODELS = ("snn", "coxnet")


def val_scores(run: FoldRun, train_time: np.ndarray, train_event: np.ndarray) -> dict[str, float]:
    """IBS of the own / interpolated curves and of the Kaplan–Meier null on the fold's inner
    VALIDATION patients (the training patients' censoring weights, as on the test fold)."""
    inner = run.inner_predictions()
    nan = {m: float("nan") for m in VAL_METRICS}
    if inner is None or not survival_columns(inner):
        return nan
    v = inner[inner["role"] == "val"]
    curve = SurvivalCurve.from_survival_columns(v[survival_columns(v)].to_numpy(float), run.bin_edges)
    t, e, r = v["time"].to_numpy(float), v["event"].to_numpy(float), v["risk"].to_numpy(float)
    own = survival_fold_metrics(train_time, train_event, t, e, r, curve)["ibs"]
    cal = calibration_metrics(train_time, train_event, t, e, r, curve=curve)
    return {"val_ibs": own.value, "val_ibs_interp": cal["ibs_interp"].value,
            "val_ibs_km": cal["ibs_km"].value}


def run(args: argparse.Namespace) -> dict:
    work: Path = args.work
    files = write_gse7390(work)
    sheet_path = work / "canonical.csv"  # what the DAG's sheet rule writes (no slide columns)
    sheet = read_sample_sheet(CohortConfig(sample_sheet=files.sheet, rna=files.expression))
    sheet.to_csv(sheet_path, index=False)
    rna_path = work / "rna.h5ad"
    build_rna(files.expression, sheet_path, RnaConfig(**files.rna_settings()), rna_path)
    teacher = TeacherConfig(device="cpu")  # package defaults: the protocol a real cohort gets
    if args.time_bins:
        teacher = teacher.model_copy(update={"time_bins": args.time_bins})
    baselines = BaselinesConfig()
    spec = model_spec("snn", teacher=teacher, baselines=baselines, tiled_magnifications=["10x", "20x"])
    patients = pd.DataFrame({"patient_id": sheet["patient_id"].astype(str), "site": "",
                             "stratum": sheet["event"].astype(str)})
    rows = []
    t0 = time.perf_counter()
    for rep in range(args.repeats):
        seed = args.seed + rep
        splits, _ = make_splits(patients, folds=args.folds, val_fraction=0.2, seed=seed,
                                site_disjoint="no")
        split_path = work / f"splits_{rep}.csv"
        splits.to_csv(split_path, index=False)
        results = work / "results" / f"rep{rep}"
        fold_dir = {(m, k): results / "survival" / m / f"fold{k}" for m in MODELS
                    for k in range(args.folds)}
        todo = [FoldTarget(k, fold_dir["snn", k]) for k in range(args.folds)
                if not (args.reuse and (fold_dir["snn", k] / "metrics.json").exists())]
        if todo:
            run_folds_files(spec, todo, sheet=sheet_path, splits=split_path, rna=rna_path,
                            features_dir=work / "features", task="survival", seed=seed,
                            cohort="gse7390", progress=False)
        run_coxnet_folds(sheet=sheet_path, splits=split_path, rna=rna_path, cfg=teacher, seed=seed,
                         cohort="gse7390",
                         targets=[(k, fold_dir["coxnet", k]) for k in range(args.folds)
                                  if not (args.reuse and (fold_dir["coxnet", k] / "metrics.json").exists())])
        tables = load_cohort_tables(sheet_path, split_path)
        ev = evaluate_cohort(results, tables, models=list(MODELS), tasks=["survival"], n_boot=10)
        wide = ev.metrics.pivot_table(index=["model", "fold"], columns="metric", values="value",
                                      dropna=False)
        for model in MODELS:
            for r in ev.runs["survival"][model]:
                tt, te = tables.train_outcomes(r.fold)
                row = {"repeat": rep, "fold": r.fold, "model": model,
                       **{m: float(wide.loc[(model, r.fold), m]) for m in METRICS},
                       **val_scores(r, tt, te), "best_epoch": r.info.get("best_epoch")}
                rows.append(row)
                log.info("rep %d fold %d %s (%.0f s): C %.3f IBS own %.3f interp %.3f recal %.3f | "
                         "KM %.3f | val own %.3f interp %.3f KM %.3f", rep, r.fold, model,
                         time.perf_counter() - t0, row["c_harrell"], row["ibs"], row["ibs_interp"],
                         row["ibs_recal"], row["ibs_km"], row["val_ibs"], row["val_ibs_interp"],
                         row["val_ibs_km"])
    table = pd.DataFrame(rows)
    summary = {}
    for model, g in table.groupby("model", sort=False):
        summary[model] = {m: {"mean": float(g[m].mean()), "std": float(g[m].std(ddof=1)),
                              "n": int(g[m].notna().sum())} for m in (*METRICS, *VAL_METRICS)}
        for m, km in (("ibs", "ibs_km"), ("ibs_interp", "ibs_km"), ("ibs_recal", "ibs_km"),
                      ("val_ibs", "val_ibs_km"), ("val_ibs_interp", "val_ibs_km")):
            d = (g[m] - g[km]).dropna()
            summary[model][f"{m}_minus_km"] = {"mean": float(d.mean()),
                                               "folds_better_than_km": int((d < 0).sum()),
                                               "folds": int(d.size)}
    return {"dataset": "GSE7390 (sksurv.datasets.load_breast_cancer): 198 patients, 51 events, "
                       "76 probe sets, log2", "repeats": args.repeats, "folds": args.folds,
            "seed": args.seed, "teacher_protocol": "package defaults (TeacherConfig())"
            + (f", time_bins={args.time_bins}" if args.time_bins else ""),
            "survival_head_init": "training Kaplan–Meier hazards (bias), zero weights",
            "baselines": BaselinesConfig().model_dump(), "seconds": time.perf_counter() - t0,
            "summary": summary, "per_fold": table.to_dict(orient="records")}


def _no_nan(value):
    """NaN → None: JSON has no NaN (an undefined metric, e.g. CoxNet's ibs_interp)."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/duopath_gse7390"))
    ap.add_argument("--reuse", action="store_true",
                    help="reuse folds already trained in --work (same seeds), rescore only")
    ap.add_argument("--time-bins", type=int, default=0, help="teacher.time_bins (0: the default)")
    ap.add_argument("--out", type=Path, default=REPO / "bench/results/gse7390.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for name in ("duopath", "duopath.training", "duopath.training.trainer", "duopath.rna"):
        logging.getLogger(name).setLevel(logging.WARNING)
    result = run(args)
    write_json(args.out, _no_nan(result))
    for model, s in result["summary"].items():
        print(model, {m: f"{v['mean']:.3f}±{v['std']:.3f}" for m, v in s.items() if "std" in v},
              {m: v for m, v in s.items() if m.endswith("_km")})


if __name__ == "__main__":
    main()
