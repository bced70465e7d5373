"""Does the student gain from training patients that have a slide but no RNA?

``student.slide_only_patients: task`` (the default) lets a training patient without RNA add the
task loss to the student's training (no KD term: its teacher cannot run on it); ``exclude``
(``student_kdonly``) trains the student on the teacher's patients only, as the paper does. Both
are scored on the SAME validation and test patients -- every patient with a slide -- so the
difference is paired.

The cohort is the planted-signal one of ``bench/planted_signal.py`` (tile features with a
tumour and a TME factor, RNA carrying both, Weibull survival), with the RNA of a random
``--missing-rna`` fraction of patients removed (seeded; independent of the outcome). Per seed
and fold: the teacher (on the patients with RNA), then ``student`` (task) and ``student_kdonly``
(exclude) -- and with ``--with-nokd`` ``student_nokd`` (task loss only) --, all through
``duopath.training.run`` with the config's ``teacher:`` / ``student:`` sections. No setting is
chosen here: the default was fixed before this ran, and the test folds only score.

Writes ``bench/results/slide_only_student.json``: per model the test C-index per fold (all
seeds), mean ± sd, the patients used per fold, and paired differences with a sign test and a
Wilcoxon signed-rank p-value (``planted_signal.paired``).

Usage: ``python bench/slide_only_student.py --patients 150 --folds 5 --seeds 3 --with-nokd``
(9 min on an idle 2-core machine, session 6). The JSON is rewritten after every fold, so a
stopped run keeps the folds it finished.
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
from planted_signal import MAGS, paired, write_cohort  # bench/ is the script's own folder

from duopath.config import StudentConfig, TeacherConfig
from duopath.layout import FOLD_FILES
from duopath.training.run import model_spec, run_fold_files
from duopath.training.splits import make_splits, patient_table

REPO = Path(__file__).resolve().parents[1]
STUDENTS = ["student", "student_kdonly"]  # + student_nokd with --with-nokd
PAIRS = [("student", "student_kdonly"), ("student", "student_nokd"), ("student_nokd", "student_kdonly")]
log = logging.getLogger("bench.slide_only")


def drop_rna(cohort: dict, fraction: float, seed: int) -> list[str]:
    """Remove the RNA of a random ``fraction`` of patients (AnnData rows and sheet IDs)."""
    import anndata as ad

    adata = ad.read_h5ad(cohort["rna"])
    rng = np.random.default_rng([seed, 7])
    patients = list(map(str, adata.obs_names))
    gone = sorted(rng.choice(patients, size=round(fraction * len(patients)), replace=False).tolist())
    kept = adata[[p not in set(gone) for p in patients]].copy()
    kept.uns["patients_without_rna"] = np.array(gone, dtype=object)
    kept.write_h5ad(cohort["rna"])
    sheet = pd.read_csv(cohort["sheet"], dtype={"patient_id": str})
    sheet.loc[sheet["patient_id"].isin(gone), "rna_sample_id"] = ""
    sheet.to_csv(cohort["sheet"], index=False)
    return gone


def run_seed(args: argparse.Namespace, seed: int, teacher: TeacherConfig, student: StudentConfig):
    """One drawn cohort: yield (model, fold record) for the teacher and each student per fold."""
    work = args.work / f"seed{seed}"
    c = write_cohort(work, args.patients, seed, args.feature_noise, args.immune_contrast, args.hazard_e)
    gone = drop_rna(c, args.missing_rna, seed)
    # the DAG's split rule: one row per patient, stratified by event x the modalities the sheet
    # lists (so every fold tests about the same share of patients without RNA)
    patients = patient_table(pd.read_csv(c["sheet"], dtype=str, keep_default_na=False), "survival")
    splits, _ = make_splits(patients, folds=args.folds, val_fraction=0.2, seed=seed, site_disjoint="no")
    splits.to_csv(work / "splits.csv", index=False)
    log.info("seed %d: %d patients, %d without RNA", seed, args.patients, len(gone))
    common = dict(sheet=c["sheet"], splits=work / "splits.csv", rna=c["rna"], features_dir=c["features"],
                  task="survival", seed=seed, cohort="planted_mixed", progress=False)
    for k in range(args.folds):
        t0 = time.perf_counter()
        spec = model_spec("teacher", teacher=teacher, tiled_magnifications=MAGS)
        runs = {"teacher": run_fold_files(spec, fold=k, out_dir=work / "teacher" / f"fold{k}", **common)}
        ckpt = work / "teacher" / f"fold{k}" / FOLD_FILES["checkpoint"]
        for model in STUDENTS + (["student_nokd"] if args.with_nokd else []):
            spec = model_spec(model, student=student, teacher_checkpoint=ckpt)
            runs[model] = run_fold_files(spec, fold=k, out_dir=work / model / f"fold{k}",
                                         teacher_checkpoint=ckpt, **common)
        log.info("seed %d fold %d (%.0f s): %s", seed, k, time.perf_counter() - t0,
                 {m: round(r["test"]["c_harrell"], 3) for m, r in runs.items()})
        for model, r in runs.items():
            yield model, {"seed": seed, "fold": k, "c_harrell": float(r["test"]["c_harrell"]),
                          "n_patients": r["n_patients"],
                          "n_train_without_rna": r.get("n_train_without_rna", 0),
                          "n_test_without_rna": r.get("n_test_without_rna", 0)}


def summarise(args: argparse.Namespace, records: dict[str, list[dict]], *, seeds_done: int,
              seconds: float) -> tuple[dict, dict]:
    """Per model mean ± sd over every fold of every seed so far, and the paired differences."""
    scores = {m: [r["c_harrell"] for r in recs] for m, recs in records.items()}
    summary = {m: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else math.nan,
                   "mean_test_patients": float(np.mean([r["n_patients"]["test"] for r in records[m]])),
                   "mean_train_patients": float(np.mean([r["n_patients"]["train"] for r in records[m]])),
                   "mean_train_without_rna": float(np.mean([r["n_train_without_rna"] for r in records[m]])),
                   "folds": records[m]} for m, v in scores.items()}
    result = {"task": "survival", "metric": "c_harrell", "patients": args.patients, "folds": args.folds,
              "seeds": seeds_done, "seed": args.seed, "missing_rna": args.missing_rna,
              "feature_noise": args.feature_noise, "immune_contrast": args.immune_contrast,
              "hazard_e": args.hazard_e, "epochs": args.epochs or "config.yaml", "seconds": seconds,
              "note": "teacher: patients with RNA; students: every patient with a slide at val/test "
                      "(paired); student_kdonly trains on the teacher's patients only",
              "models": summary,
              "paired": {f"{a} - {b}": paired(scores[a], scores[b]) for a, b in PAIRS
                         if a in scores and b in scores}}
    return summary, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=150)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--missing-rna", type=float, default=0.5, help="fraction of patients without RNA")
    ap.add_argument("--feature-noise", type=float, default=1.0)
    ap.add_argument("--immune-contrast", type=float, default=1.0)
    ap.add_argument("--hazard-e", type=float, default=0.8)
    ap.add_argument("--epochs", type=int, default=None,
                    help="epochs of the teacher and the students (default: config.yaml's)")
    ap.add_argument("--with-nokd", action="store_true", help="also student_nokd (task loss only)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/duopath_slide_only"))
    ap.add_argument("--out", type=Path, default=REPO / "bench/results/slide_only_student.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for name in ("duopath", "duopath.training", "duopath.training.loop"):
        logging.getLogger(name).setLevel(logging.ERROR)

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    for section in ("teacher", "student"):  # --epochs: the same shorter schedule for every model
        cfg[section]["optim"]["epochs"] = args.epochs or cfg[section]["optim"]["epochs"]
    teacher = TeacherConfig.model_validate({**cfg["teacher"], "device": "cpu"})
    student = StudentConfig.model_validate({**cfg["student"], "device": "cpu", "ablations": ["kdonly"],
                                            "slide_only_patients": "task"})
    t0 = time.perf_counter()
    records: dict[str, list[dict]] = {}
    for seed in range(args.seed, args.seed + args.seeds):
        for model, rec in run_seed(args, seed, teacher, student):
            records.setdefault(model, []).append(rec)
            if model != ("student_nokd" if args.with_nokd else STUDENTS[-1]):  # the fold is complete
                continue
            summary, result = summarise(args, records, seeds_done=seed - args.seed + 1,
                                        seconds=time.perf_counter() - t0)
            args.out.parent.mkdir(parents=True, exist_ok=True)  # after every fold: a partial run counts
            args.out.write_text(json.dumps(result, indent=2) + "\n")
    for m, s in summary.items():
        print(f"{m:16s} C {s['mean']:.3f} ± {s['std']:.3f}  (test n {s['mean_test_patients']:.1f}, train n "
              f"{s['mean_train_patients']:.1f}, of which without RNA {s['mean_train_without_rna']:.1f})")
    for p, s in result["paired"].items():
        print(f"{p:30s} {s['mean']:+.3f}  (A better {s['folds_a_better']}, worse {s['folds_a_worse']} of "
              f"{s['folds']}; sign p {s['sign_p']:.3g}, wilcoxon p {s['wilcoxon_p']:.3g})")


if __name__ == "__main__":
    main()
