"""Where every output lives, relative to ``output_dir`` (one place; rules, CLI and tests use it).

The layout follows DESIGN.md's data contracts. ``{cohort}``/``{slide}``/``{encoder}`` are
Snakemake wildcards as well as ``str.format`` fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

Task = Literal["survival", "classification"]
TASKS: tuple[str, ...] = get_args(Task)
"""What a model predicts: the one home of the task names (the ``{task}`` folder of ``RESULTS_DIR``)."""

DEMO_DIR = "demo/{cohort}"
DEMO_SHEET = DEMO_DIR + "/samples.csv"
DEMO_RNA = DEMO_DIR + "/rna_counts.tsv"
DEMO_TRUTH = DEMO_DIR + "/truth.csv"  # the planted truth (duopath.evaluation.reference)
SHEET = "cohorts/{cohort}/samples.csv"
MASK_PNG = "masks/{cohort}/{slide}.png"
MASK_JSON = "masks/{cohort}/{slide}.json"
MASK_QC = "qc/{cohort}/{slide}.mask.jpg"
TILES = "tiles/{cohort}/{slide}.parquet"
TILES_QC = "qc/{cohort}/{slide}.tiles.jpg"
FEATURES = "features/{cohort}/{encoder}/{slide}.zarr"
WSI_SUMMARY = "qc/{cohort}/wsi_summary.csv"
QC_CONTACT_SHEET = "qc/{cohort}/contact_sheet.png"  # one thumbnail per slide, for the reader
RNA_H5AD = "rna/{cohort}.h5ad"
RNA_QC = "rna/{cohort}.qc.png"
RNA_SUMMARY = "rna/{cohort}.summary.txt"
SPLITS = "splits/{cohort}.csv"
SPLITS_INFO = "splits/{cohort}.json"
LOGS = "logs/{rule}/{cohort}/{name}.log"
RESULTS_DIR = "results/{cohort}/{task}/{model}/fold{fold}"
PREDICTIONS = RESULTS_DIR + "/predictions.parquet"
INNER_PREDICTIONS = RESULTS_DIR + "/inner_predictions.parquet"
METRICS = RESULTS_DIR + "/metrics.json"
TRAIN_LOG = RESULTS_DIR + "/train_log.csv"
CHECKPOINT = RESULTS_DIR + "/checkpoint.safetensors"  # duopath.checkpoints (no pickle)
COHORT_RESULTS = "results/{cohort}"  # {task}/{model}/fold{k}/ below it
HEATMAPS_DIR = RESULTS_DIR + "/heatmaps"  # *.png embedded in the report when present
METRICS_CSV = "results/{cohort}/metrics.csv"  # task x model x fold x metric (+ reason)
SUMMARY_CSV = "results/{cohort}/summary.csv"  # mean ± std over folds per task x model x metric
COMPARISONS_CSV = "results/{cohort}/comparisons.csv"  # every model vs the main model
REFERENCE_CSV = "results/{cohort}/reference.csv"  # the planted truth's score (demo cohorts; else empty)
REPORT = "results/{cohort}/report.html"
REPORT_FIGURES = "results/{cohort}/figures"  # the report's figures as PNG files (snakemake --report)
# Snakemake `benchmark:` TSVs (wall time, max RSS, I/O), one per job: {stage} is the rule, {job}
# its wildcards as a sub-path (a slide, or task/model/fold). Summarised in the report.
BENCHMARKS_DIR = "benchmarks/{cohort}"
BENCHMARK = BENCHMARKS_DIR + "/{stage}/{job}.tsv"
# an external test cohort ({cohort}) scored with the models of its source cohort
EXTERNAL_DIR = "results/{cohort}/external/{task}/{model}"
EXTERNAL_PREDICTIONS = EXTERNAL_DIR + "/predictions.parquet"  # every fold's model + the ensemble
EXTERNAL_METRICS = EXTERNAL_DIR + "/metrics.json"
EXTERNAL_CSV = "results/{cohort}/external.csv"  # task x model x fold (or ensemble) x metric


FOLD_FILES = {
    "checkpoint": CHECKPOINT.rsplit("/", 1)[1],
    "train_log": TRAIN_LOG.rsplit("/", 1)[1],
    "inner_predictions": INNER_PREDICTIONS.rsplit("/", 1)[1],
    "predictions": PREDICTIONS.rsplit("/", 1)[1],
    "metrics": METRICS.rsplit("/", 1)[1],
}
"""The five outputs of one trained fold, by name, in the order they are written (metrics last:
its presence means the fold is complete)."""


@dataclass(frozen=True)
class FoldPaths:
    """The files of one fold's result directory (:data:`RESULTS_DIR`)."""

    out_dir: Path

    @property
    def checkpoint(self) -> Path:
        return Path(self.out_dir) / FOLD_FILES["checkpoint"]

    @property
    def train_log(self) -> Path:
        return Path(self.out_dir) / FOLD_FILES["train_log"]

    @property
    def inner_predictions(self) -> Path:
        return Path(self.out_dir) / FOLD_FILES["inner_predictions"]

    @property
    def predictions(self) -> Path:
        return Path(self.out_dir) / FOLD_FILES["predictions"]

    @property
    def metrics(self) -> Path:
        return Path(self.out_dir) / FOLD_FILES["metrics"]


def fold_of(result_dir: Path | str) -> int:
    """The fold ``k`` of a :data:`RESULTS_DIR` folder (``.../fold{k}``)."""
    name = Path(result_dir).name
    if not (name.startswith("fold") and name[4:].isdigit()):
        raise ValueError(f"{result_dir}: not a fold result folder (.../fold<k>)")
    return int(name[4:])


def out(output_dir: str, pattern: str, **fields: str) -> str:
    """Join ``output_dir`` and a layout pattern, filling the given fields (others stay wildcards)."""
    path = f"{output_dir.rstrip('/')}/{pattern}"
    if not fields:
        return path
    return path.format_map(_Keep(fields))


class _Keep(dict):
    """``format_map`` helper that leaves unknown ``{wildcards}`` in place."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"
