"""Planted-signal check at a size the 30-patient demo cannot reach: does the teacher beat its
ablations, and the distilled student its undistilled twin and the slide-only baselines?

Why a feature-level cohort: the demo renders slides and embeds them (minutes per 30 patients on
CPU) and its test folds hold ~5 patients, so C-index differences below ~0.15 are noise. Here the
same planted structure is drawn directly as tile features, so hundreds of patients train in
minutes through the SAME code the DAG runs (``duopath.training.run.run_fold``, the config's
``teacher:`` / ``student:`` / ``baselines:`` sections, real split tables):

* per patient a tumour factor t and a microenvironment factor e ~ N(0, 1);
* tiles on a real grid: tumour-like with probability sigmoid(1.5 t), otherwise stroma that is
  immune-rich with probability sigmoid(1.5 e); a tile's feature is its type's prototype plus
  noise (``--feature-noise``), its 20x children add their own noise; ``--immune-contrast``
  (< 1) moves the immune-rich prototype towards plain stroma, so that the TME factor is faint
  in histology but clear in RNA;
* RNA: tumour genes = t · loading + noise, TME genes = e · loading + noise;
* optionally (``--fine-signal f`` > 0) a nuclear-atypia factor a ~ N(0, 1) that only 20x can
  see: the 20x children of tumour tiles carry ``a`` along their own direction while the 10x
  tile (a coarser view, nuclei below its resolution) does not, and RNA does not carry it;
* hazard ∝ exp(0.8 t − w e + f a) (Weibull; w = ``--hazard-e``, 0.8 by default), ~25 %
  censored; label = high grade when t + 0.5 e + f a exceeds its median.

``--gates mean,max_confidence,validation`` trains the full teacher once per dual-magnification
gate, as ``teacher@<gate>``, on the same cohorts, splits and seeds (the single-magnification
ablations ``teacher_10x`` / ``teacher_20x`` are what a gate should match); the JSON keeps the
weighting ``validation`` chose in each fold (``gate_weights``).

``--merge a.json b.json --out c.json`` joins runs of other seeds (e.g. run side by side).

``--seeds N`` repeats everything on N independently drawn cohorts (new factors, prototypes,
splits and training seeds), so paired comparisons rest on N × folds test folds; each paired
line then carries a one-sided sign test and a Wilcoxon signed-rank p-value.

Prints and writes ``bench/results/planted_signal_{task}.json``: per model the test C-index (or AUC)
per fold, mean ± std, and paired differences (mean, and in how many folds A > B) for the
comparisons the teacher and student issues ask about.

Usage: ``python bench/planted_signal.py --patients 150 --folds 3 --task survival``
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
import zarr

from duopath.config import BaselinesConfig, StudentConfig, TeacherConfig
from duopath.encoding.extract import write_feature_group
from duopath.layout import FOLD_FILES
from duopath.training.run import model_spec, run_fold_files
from duopath.training.splits import make_splits

REPO = Path(__file__).resolve().parents[1]
D = 64
SLIDE_MPP = 0.5
MAGS = ["10x", "20x"]
TEACHERS = ["teacher", "teacher_no_cgc", "teacher_no_igc", "teacher_one_group", "teacher_rna_mean",
            "teacher_10x", "teacher_20x"]
BASELINES = ["abmil", "transmil", "snn"]
STUDENTS = ["student", "student_nokd"]
PAIRS = [("teacher", m) for m in TEACHERS[1:]] + [
    ("student", "student_nokd"), ("student", "abmil"), ("student", "transmil"),
    ("student_nokd", "abmil"), ("teacher", "snn"), ("teacher_20x", "teacher_10x"),
]
log = logging.getLogger("bench.planted")


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def write_cohort(root: Path, n: int, seed: int, noise: float, immune_contrast: float,
                 hazard_e: float = 0.8, fine_signal: float = 0.0) -> dict:
    """Feature stores, sample sheet, RNA AnnData and outcome of the planted cohort."""
    import anndata as ad

    rng = np.random.default_rng(seed)
    t, e = rng.normal(size=n), rng.normal(size=n)
    # its own stream, so the other draws (and earlier results) do not depend on --fine-signal
    fine_rng = np.random.default_rng([seed, 1])
    atypia, atypia_dir = fine_rng.normal(size=n), fine_rng.normal(size=D) * 1.5
    proto = rng.normal(size=(3, D)) * 1.5  # tumour, plain stroma, immune-rich stroma
    # how far immune-rich stroma sits from plain stroma: < 1 makes the TME factor hard to see in
    # the tiles while the RNA still carries it (the case a multi-modal teacher is for)
    proto[2] = proto[1] + immune_contrast * (proto[2] - proto[1])
    feats_dir = root / "features"
    feats_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        pid, sid = f"P{i:04d}", f"P{i:04d}-1"
        side = int(rng.integers(4, 8))
        ij = np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), -1).reshape(-1, 2)
        tiles10 = ij * 448
        tumour = rng.random(len(ij)) < sigmoid(1.5 * t[i])
        immune = rng.random(len(ij)) < sigmoid(1.5 * e[i])
        kind = np.where(tumour, 0, np.where(immune, 2, 1))
        f10 = proto[kind] + noise * rng.normal(size=(len(ij), D))
        f20 = np.repeat(f10, 4, axis=0) + noise * rng.normal(size=(4 * len(ij), D))
        if fine_signal:  # nuclear atypia: in the 20x children of tumour tiles only
            f20 += np.repeat(tumour, 4)[:, None] * (atypia[i] * atypia_dir)[None]
        write_store(feats_dir / f"{sid}.zarr", sid, tiles10, f10, f20)
        rows.append({"patient_id": pid, "slide_id": sid, "slide_path": f"{sid}.svs", "site": f"S{i % 5}"})
    lp = 0.8 * t - hazard_e * e + fine_signal * atypia
    event_time = (-np.log(rng.random(n)) / np.exp(lp)) ** (1 / 1.5) * 30
    censor = rng.uniform(10, 120, n)
    time_, event = np.minimum(event_time, censor), (event_time <= censor).astype(int)
    grade = t + 0.5 * e + fine_signal * atypia
    label = np.where(grade > np.median(grade), "high", "low")
    sheet = pd.DataFrame(rows).assign(time=np.round(time_, 3), event=event, label=label,
                                      rna_sample_id=lambda d: d["patient_id"] + "-R", mpp="")
    sheet.to_csv(root / "samples.csv", index=False)
    n_genes = 20
    load_t, load_e = rng.uniform(0.5, 1.0, n_genes), rng.uniform(0.5, 1.0, n_genes)
    genes = np.concatenate([t[:, None] * load_t + rng.normal(size=(n, n_genes)),
                            e[:, None] * load_e + rng.normal(size=(n, n_genes))], axis=1)
    adata = ad.AnnData(X=genes.astype(np.float32), obs=pd.DataFrame(index=sheet["patient_id"].tolist()),
                       var=pd.DataFrame(index=[f"G{k}" for k in range(2 * n_genes)]))
    adata.var["group_T"] = [k < n_genes for k in range(2 * n_genes)]
    adata.var["group_E"] = [k >= n_genes for k in range(2 * n_genes)]
    adata.uns["patients_without_rna"] = np.array([], dtype=object)
    adata.write_h5ad(root / "rna.h5ad")
    return {"sheet": root / "samples.csv", "rna": root / "rna.h5ad", "features": feats_dir,
            "stratum": dict(zip(sheet["patient_id"], sheet["event"].astype(str), strict=True)),
            "sites": dict(zip(sheet["patient_id"], sheet["site"], strict=True))}


def read_cohort(root: Path) -> dict:
    """The paths and strata of a cohort ``write_cohort`` wrote into ``root`` before."""
    sheet = pd.read_csv(root / "samples.csv", dtype={"patient_id": str})
    return {"sheet": root / "samples.csv", "rna": root / "rna.h5ad", "features": root / "features",
            "stratum": dict(zip(sheet["patient_id"], sheet["event"].astype(str), strict=True)),
            "sites": dict(zip(sheet["patient_id"], sheet["site"], strict=True))}


def write_store(path: Path, slide_id: str, tiles10: np.ndarray, f10: np.ndarray, f20: np.ndarray) -> None:
    """A feature store in the extractor's layout (10x tiles and their 2×2 20x children)."""
    root = zarr.open_group(str(path), mode="w")
    root.attrs.update({"encoder": "planted", "weights_id": "planted:v1", "dim": D, "slide_id": slide_id,
                       "slide_mpp": SLIDE_MPP, "status": "ok", "n_tiles": len(tiles10)})
    kids = np.array([[0, 0], [0, 224], [224, 0], [224, 224]])
    tiles20 = (tiles10[:, None, :] + kids[None]).reshape(-1, 2)
    for mag, xy, parent, feats, size0 in (
        ("10x", tiles10, np.full(len(tiles10), -1), f10, 448),
        ("20x", tiles20, np.repeat(np.arange(len(tiles10)), 4), f20, 224),
    ):
        mpp = 1.0 if mag == "10x" else 0.5
        rows = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "parent": parent,
                             "tissue_fraction": np.ones(len(xy)), "mpp": mpp, "tile_px": 224,
                             "size_um": 224 * mpp, "size0": size0})
        write_feature_group(root, mag, rows, feats.astype(np.float16))


def gate_pairs(gates: list[str]) -> list[tuple[str, str]]:
    """The paired comparisons of ``--gates``: each gate against the later ones and against each
    single-magnification teacher."""
    names = [f"teacher@{g}" for g in gates]
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1:]] + [
        (a, b) for a in names for b in ("teacher_10x", "teacher_20x")]


def run_cohort(args: argparse.Namespace, seed: int, work: Path, wanted: list[str], teacher: TeacherConfig,
               student: StudentConfig, baselines: BaselinesConfig, metric: str):
    """Draw (or reuse) one cohort in ``work``; yield (model, test score, gate fit) per fold and model."""
    t0 = time.perf_counter()
    gates = [g for g in args.gates.split(",") if g]
    if "teacher" in wanted or gates or not (work / "samples.csv").exists():
        c = write_cohort(work, args.patients, seed, args.feature_noise, args.immune_contrast,
                         args.hazard_e, args.fine_signal)
    else:  # the same cohort again (students against the teachers already trained there)
        c = read_cohort(work)
    patients = pd.DataFrame({"patient_id": list(c["stratum"]), "site": list(c["sites"].values()),
                             "stratum": list(c["stratum"].values())})
    splits, _ = make_splits(patients, folds=args.folds, val_fraction=0.2, seed=seed, site_disjoint="no")
    splits_path = work / "splits.csv"
    splits.to_csv(splits_path, index=False)
    log.info("cohort seed %d: %d patients written in %.1f s", seed, args.patients, time.perf_counter() - t0)
    common = dict(sheet=c["sheet"], splits=splits_path, rna=c["rna"], features_dir=c["features"],
                  task=args.task, seed=seed, cohort="planted", progress=False)
    for k in range(args.folds):
        done = {}
        for model in [m for m in TEACHERS + BASELINES if m in wanted]:
            spec = model_spec(model, teacher=teacher, baselines=baselines, tiled_magnifications=MAGS)
            m = run_fold_files(spec, fold=k, out_dir=work / "results" / model / f"fold{k}", **common)
            done[model] = m["test"][metric], m.get("gate_fit")
        for gate in gates:
            spec = model_spec("teacher", teacher=teacher.model_copy(update={"gating": gate}),
                              baselines=baselines, tiled_magnifications=MAGS)
            out_dir = work / "results" / f"teacher@{gate}" / f"fold{k}"
            m = run_fold_files(spec, fold=k, out_dir=out_dir, **common)
            done[f"teacher@{gate}"] = m["test"][metric], m.get("gate_fit")
        for model in [m for m in STUDENTS if m in wanted]:
            teacher_ckpt = work / "results/teacher" / f"fold{k}" / FOLD_FILES["checkpoint"]
            spec = model_spec(model, student=student, teacher_checkpoint=teacher_ckpt)
            m = run_fold_files(spec, fold=k, out_dir=work / "results" / model / f"fold{k}",
                               teacher_checkpoint=teacher_ckpt, **common)
            done[model] = m["test"][metric], m.get("gate_fit")
        log.info("seed %d fold %d done (%.0f s): %s", seed, k, time.perf_counter() - t0,
                 {m: round(v[0], 3) for m, v in done.items()})
        for model, (score, gate_fit) in done.items():
            yield model, score, gate_fit


def paired(a: list[float], b: list[float]) -> dict:
    """Paired difference A − B over the same test folds: mean, wins/ties/losses and one-sided
    p-values for "A is better" (sign test on the untied folds; Wilcoxon signed-rank)."""
    from scipy.stats import binomtest, wilcoxon

    d = np.asarray(a) - np.asarray(b)
    wins, losses = int((d > 1e-12).sum()), int((d < -1e-12).sum())
    untied = d[np.abs(d) > 1e-12]
    sign_p = binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue if wins + losses else 1.0
    wil_p = wilcoxon(untied, alternative="greater").pvalue if len(untied) >= 2 else 1.0
    return {"mean": float(d.mean()), "folds_a_better": wins, "folds_a_worse": losses,
            "ties": len(d) - wins - losses, "folds": len(d), "sign_p": float(sign_p),
            "wilcoxon_p": float(wil_p)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=150)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--task", choices=["survival", "classification"], default="survival")
    ap.add_argument("--feature-noise", type=float, default=1.0)
    ap.add_argument("--immune-contrast", type=float, default=1.0)
    ap.add_argument("--hazard-e", type=float, default=0.8,
                    help="weight of the TME factor in the hazard (0: the E genes carry no outcome "
                    "signal, only noise the E subspace can overfit)")
    ap.add_argument("--fine-signal", type=float, default=0.0,
                    help="weight of a nuclear-atypia factor seen only at 20x in the hazard and grade")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=1, help="independent cohorts seed, seed+1, ...")
    ap.add_argument("--models", default=",".join(TEACHERS + BASELINES + STUDENTS),
                    help="comma list; students reuse the work dir's teacher checkpoints when "
                    "'teacher' is not listed")
    ap.add_argument("--teacher-settings", default="{}",
                    help="JSON merged into the config's teacher: section (e.g. {\"gating\": \"mean\"}); "
                    "the teacher's ablations and the baselines' protocol follow it")
    ap.add_argument("--student-settings", default="{}",
                    help="JSON merged into the config's student: section (e.g. a KD weight sweep)")
    ap.add_argument("--gates", default="",
                    help="comma list of dual-magnification gates (e.g. mean,max_confidence,validation): "
                    "the teacher once per gate, as teacher@<gate>")
    ap.add_argument("--work", type=Path, default=Path("/tmp/duopath_planted"))
    ap.add_argument("--out", type=Path, default=None,
                    help="default: bench/results/planted_signal_{task}.json")
    ap.add_argument("--merge", type=Path, nargs="+", default=None,
                    help="instead of running: merge these result JSONs (same settings, other seeds) "
                    "into --out")
    args = ap.parse_args()
    if args.merge:
        if args.out is None:
            raise SystemExit("--merge needs --out")
        write_and_print(merge(args.merge), args.out)
        return
    tag = "" if args.immune_contrast == 1.0 else f"_contrast{args.immune_contrast:g}"
    tag += f"_fine{args.fine_signal:g}" if args.fine_signal else ""
    tag += "_gates" if args.gates else ""
    args.out = args.out or REPO / f"bench/results/planted_signal_{args.task}{tag}.json"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for name in ("duopath", "duopath.training", "duopath.training.loop"):
        logging.getLogger(name).setLevel(logging.WARNING)

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    teacher = TeacherConfig.model_validate({**cfg["teacher"], "device": "cpu",
                                            **json.loads(args.teacher_settings)})
    student = StudentConfig.model_validate({**cfg["student"], "device": "cpu",
                                            **json.loads(args.student_settings)})
    wanted = [m for m in args.models.split(",") if m]
    unknown = sorted(set(wanted) - set(TEACHERS + BASELINES + STUDENTS))
    if unknown:
        raise SystemExit(f"--models: unknown {unknown}")
    baselines = BaselinesConfig.model_validate(cfg.get("baselines", {}))
    t0 = time.perf_counter()
    metric = "c_harrell" if args.task == "survival" else "auc"
    scores: dict[str, list[float]] = {}
    gate_weights: dict[str, list[dict]] = {}
    for seed in range(args.seed, args.seed + args.seeds):
        work = args.work if args.seeds == 1 else args.work / f"seed{seed}"
        for model, score, gate_fit in run_cohort(args, seed, work, wanted, teacher, student, baselines,
                                                 metric):
            scores.setdefault(model, []).append(score)
            if gate_fit is not None and len(gate_fit["weights"]) > 1:
                gate_weights.setdefault(model, []).append(
                    {"weights": gate_fit["weights"], "fallback": gate_fit["fallback"]})

    result = {"task": args.task, "metric": metric, "patients": args.patients, "folds": args.folds,
              "teacher_settings": json.loads(args.teacher_settings), "teacher_gating": teacher.gating,
              "student_gating": student.gating,
              "student_settings": json.loads(args.student_settings),
              "feature_noise": args.feature_noise, "immune_contrast": args.immune_contrast,
              "hazard_e": args.hazard_e, "fine_signal": args.fine_signal,
              "seed": args.seed, "seeds": args.seeds, "seconds": time.perf_counter() - t0,
              "gates": args.gates, **summarise(scores, args.gates), "gate_weights": gate_weights}
    write_and_print(result, args.out)


def summarise(scores: dict[str, list[float]], gates: str) -> dict:
    """Per model mean ± std over the test folds, and the paired comparisons."""
    summary = {m: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else math.nan,
                   "folds": [float(x) for x in v]} for m, v in scores.items()}
    pairs = {f"{a} - {b}": paired(scores[a], scores[b])
             for a, b in PAIRS + gate_pairs([g for g in gates.split(",") if g])
             if a in scores and b in scores}
    return {"models": summary, "paired": pairs}


def merge(paths: list[Path]) -> dict:
    """Results of runs with the same settings but other seeds (e.g. one seed each, run side by
    side) as one: folds concatenated in the order given, summary and paired tests recomputed."""
    runs = [json.loads(p.read_text()) for p in paths]
    same = ("task", "metric", "patients", "folds", "teacher_settings", "student_settings", "feature_noise",
            "immune_contrast", "hazard_e", "fine_signal", "gates")
    for p, r in zip(paths[1:], runs[1:], strict=True):
        differ = [k for k in same if r.get(k) != runs[0].get(k)]
        if differ:
            raise SystemExit(f"--merge: {p} differs from {paths[0]} in {differ}")
    scores: dict[str, list[float]] = {}
    gate_weights: dict[str, list[dict]] = {}
    for r in runs:
        for m, s in r["models"].items():
            scores.setdefault(m, []).extend(s["folds"])
        for m, fits in r.get("gate_weights", {}).items():
            gate_weights.setdefault(m, []).extend(fits)
    return {**{k: runs[0].get(k) for k in (*same, "teacher_gating", "student_gating")},
            "seed": [r["seed"] for r in runs], "seeds": sum(r["seeds"] for r in runs),
            "seconds": sum(r["seconds"] for r in runs), "merged_from": [p.name for p in paths],
            **summarise(scores, runs[0].get("gates") or ""), "gate_weights": gate_weights}


def write_and_print(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for m, s in result["models"].items():
        print(f"{m:18s} {result['metric']} {s['mean']:.3f} ± {s['std']:.3f}")
    for m, fits in result["gate_weights"].items():
        print(f"{m:18s} chosen weights per fold: "
              + "; ".join(" ".join(f"{k} {w:.1f}" for k, w in f["weights"].items()) for f in fits))
    for p, s in result["paired"].items():
        print(f"{p:28s} {s['mean']:+.3f}  (A better {s['folds_a_better']}, tie {s['ties']}, worse "
              f"{s['folds_a_worse']} of {s['folds']}; sign p {s['sign_p']:.3g}, "
              f"wilcoxon p {s['wilcoxon_p']:.3g})")


if __name__ == "__main__":
    main()
