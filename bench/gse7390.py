"""GSE7390 (real breast-cancer microarray, RNA only): C-index and IBS of the SNN and a CoxNet
against the Kaplan–Meier null, over repeated cross-validation with the project's split protocol.

Why: the issue-14 finding was that the RNA-only SNN ranks patients well but its survival curves
lose to a Kaplan–Meier curve that ignores every patient (IBS). This bench measures, on real
data that ship with scikit-survival (``duopath.demo.gse7390``: 198 patients, 51 events, 76
probe sets, log2 scale), per fold:

* the SNN trained by the project's own code (``run_fold``, the package-default ``teacher:``
  protocol and ``baselines:`` architecture), its IBS with its own step curves (``ibs``), with a
  constant hazard within bins (``ibs_interp``), and recalibrated on the inner VALIDATION split
  (``ibs_recal``);
* the CoxNet baseline (``duopath.models.coxnet``: alpha by inner CV within the training
  patients) on the same z-scored genes, with its Breslow curves;
* the Kaplan–Meier null of the training patients (``ibs_km``), on the same time grid.

Every setting is fixed before the run (package defaults; nothing chosen on test folds). The
RNA goes through ``duopath rna`` (``value_type: log`` and a probe map). The trainer still needs
one feature store per patient (RNA-only cohorts are wired in issue 14's second phase), so the
bench writes a one-tile placeholder store per patient; the SNN never reads it.

Usage: ``python bench/gse7390.py --repeats 3 --folds 5`` (writes bench/results/gse7390.json).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from duopath.training.predict_fold import run_fold

from duopath.config import BaselinesConfig, RnaConfig, TeacherConfig
from duopath.demo.gse7390 import write_gse7390
from duopath.encoding.extract import write_feature_group
from duopath.evaluation.calibration import calibration_metrics
from duopath.evaluation.curves import SurvivalCurve
from duopath.evaluation.metrics import survival_columns, survival_fold_metrics
from duopath.evaluation.survival import integrated_brier_score, time_grid
from duopath.io import write_json
from duopath.models.coxnet import fit_coxnet, rna_features
from duopath.rna.build import build_rna
from duopath.training.splits import make_splits

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench.gse7390")
METRICS = ("c_harrell", "c_uno", "ibs", "ibs_interp", "ibs_recal", "ibs_km")


def placeholder_stores(features_dir: Path, slide_ids: list[str]) -> None:
    """One zero tile per slide at 10x (+ its four 20x children): the trainer's BagStore needs a
    store per patient; the RNA-only SNN never reads the features."""
    features_dir.mkdir(parents=True, exist_ok=True)
    for sid in slide_ids:
        root = zarr.open_group(str(features_dir / f"{sid}.zarr"), mode="w")
        root.attrs.update({"encoder": "none", "weights_id": "placeholder", "dim": 4,
                           "slide_id": sid, "slide_mpp": 0.5, "status": "ok", "n_tiles": 1})
        for mag, xy, parent, size0, mpp in (
            ("10x", [[0, 0]], [-1], 448, 1.0),
            ("20x", [[0, 0], [0, 224], [224, 0], [224, 224]], [0, 0, 0, 0], 224, 0.5),
        ):
            xy = np.asarray(xy)
            rows = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "parent": parent,
                                 "tissue_fraction": 1.0, "mpp": mpp, "tile_px": 224,
                                 "size_um": 224 * mpp, "size0": size0})
            write_feature_group(root, mag, rows, np.zeros((len(xy), 4), dtype=np.float16))


def fold_scores(outcomes: pd.DataFrame, roles: dict[str, list[str]], pred: pd.DataFrame,
                inner: pd.DataFrame | None, edges: np.ndarray | None,
                coxnet_surv=None) -> dict[str, float]:
    """Every METRICS value of one model on one test fold (NaN where undefined)."""
    tr = outcomes.loc[roles["train"]]
    args = (tr["time"].to_numpy(float), tr["event"].to_numpy(int))
    t, e, r = pred["time"].to_numpy(float), pred["event"].to_numpy(int), pred["risk"].to_numpy(float)
    curve = None
    if survival_columns(pred):
        curve = SurvivalCurve.from_survival_columns(pred[survival_columns(pred)].to_numpy(float), edges)
    out = survival_fold_metrics(*args, t, e, r, curve)
    if coxnet_surv is not None:  # the CoxNet's own (Breslow) curves on the same grid
        grid = time_grid(*args[:1], t, e)
        out["ibs"] = integrated_brier_score(*args, t, e, coxnet_surv(grid.times), grid.times)
    val = None
    if inner is not None:
        v = inner[inner["role"] == "val"]
        val = (v["risk"].to_numpy(float), v["time"].to_numpy(float), v["event"].to_numpy(int))
    out |= calibration_metrics(*args, t, e, r, curve=curve, val=val)
    return {m: float(out[m].value) for m in METRICS}


def coxnet_frame(fit, xs: dict[str, np.ndarray], outcomes: pd.DataFrame, ids: list[str]) -> pd.DataFrame:
    """A prediction frame (patient_id, risk, time, event) of the CoxNet for ``ids``."""
    return pd.DataFrame({"patient_id": ids, "risk": fit.risk(np.stack([xs[p] for p in ids])),
                         "time": outcomes.loc[ids, "time"].to_numpy(float),
                         "event": outcomes.loc[ids, "event"].to_numpy(int)})


def run(args: argparse.Namespace) -> dict:
    work: Path = args.work
    files = write_gse7390(work, slide_column=True)
    rna_path = work / "rna.h5ad"
    adata = build_rna(files.expression, files.sheet, RnaConfig(**files.rna_settings()), rna_path)
    sheet = pd.read_csv(files.sheet, dtype={"patient_id": str})
    placeholder_stores(work / "features", sheet["slide_id"].tolist())
    outcomes = sheet.set_index("patient_id")[["time", "event"]]
    teacher = TeacherConfig(device="cpu")  # package defaults: the protocol a real cohort gets
    baselines = BaselinesConfig()
    patients = pd.DataFrame({"patient_id": sheet["patient_id"], "site": "",
                             "stratum": sheet["event"].astype(str)})
    rows = []
    t0 = time.perf_counter()
    for rep in range(args.repeats):
        seed = args.seed + rep
        splits, _ = make_splits(patients, folds=args.folds, val_fraction=0.2, seed=seed,
                                site_disjoint="no")
        split_path = work / f"splits_{rep}.csv"
        splits.to_csv(split_path, index=False)
        for k in range(args.folds):
            sel = splits[splits["fold"] == k]
            roles = {r: sorted(sel.loc[sel["role"] == r, "patient_id"]) for r in ("train", "val", "test")}
            out_dir = work / "results" / f"rep{rep}" / "snn" / f"fold{k}"
            if args.reuse and (out_dir / "metrics.json").exists():  # same seed: same fold
                info = json.loads((out_dir / "metrics.json").read_text())
            else:
                info = run_fold(sheet=files.sheet, splits=split_path, rna=rna_path,
                                features_dir=work / "features", fold=k, model="snn", cfg=teacher,
                                baselines=baselines, tiled_magnifications=["10x", "20x"],
                                task="survival", seed=seed, out_dir=out_dir, cohort="gse7390",
                                progress=False)
            edges = np.array([np.inf if v is None else v for v in info["time_bins"]], dtype=float)
            snn = fold_scores(outcomes, roles, pd.read_parquet(out_dir / "predictions.parquet"),
                              pd.read_parquet(out_dir / "inner_predictions.parquet"), edges)
            rows.append({"repeat": rep, "fold": k, "model": "snn", **snn,
                         "best_epoch": info["best_epoch"]})

            everyone = roles["train"] + roles["val"] + roles["test"]
            genes, x = rna_features(adata, roles["train"], roles["val"] + roles["test"], everyone)
            xs = dict(zip(everyone, x, strict=True))
            tr = outcomes.loc[roles["train"]]
            fit = fit_coxnet(np.stack([xs[p] for p in roles["train"]]), tr["time"], tr["event"],
                             genes=genes, seed=seed)

            x_test = np.stack([xs[p] for p in roles["test"]])
            cox = fold_scores(outcomes, roles, coxnet_frame(fit, xs, outcomes, roles["test"]),
                              coxnet_frame(fit, xs, outcomes, roles["val"]).assign(role="val"), None,
                              coxnet_surv=lambda times, xt=x_test, f=fit: f.survival(xt, times))
            rows.append({"repeat": rep, "fold": k, "model": "coxnet", **cox, **fit.summary()})
            log.info("rep %d fold %d (%.0f s): snn C %.3f IBS %.3f/%.3f/%.3f | coxnet C %.3f IBS "
                     "%.3f/%.3f | KM %.3f", rep, k, time.perf_counter() - t0, snn["c_harrell"],
                     snn["ibs"], snn["ibs_interp"], snn["ibs_recal"], cox["c_harrell"], cox["ibs"],
                     cox["ibs_recal"], snn["ibs_km"])
    table = pd.DataFrame(rows)
    summary = {}
    for model, g in table.groupby("model", sort=False):
        summary[model] = {m: {"mean": float(g[m].mean()), "std": float(g[m].std(ddof=1)),
                              "n": int(g[m].notna().sum())} for m in METRICS}
        for m in ("ibs", "ibs_interp", "ibs_recal"):
            d = (g[m] - g["ibs_km"]).dropna()
            summary[model][f"{m}_minus_km"] = {"mean": float(d.mean()),
                                               "folds_better_than_km": int((d < 0).sum()),
                                               "folds": int(d.size)}
    return {"dataset": "GSE7390 (sksurv.datasets.load_breast_cancer): 198 patients, 51 events, "
                       "76 probe sets, log2", "repeats": args.repeats, "folds": args.folds,
            "seed": args.seed, "teacher_protocol": "package defaults (TeacherConfig())",
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
                    help="reuse SNN folds already trained in --work (same seeds), rescore only")
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
