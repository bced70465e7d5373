"""CoxNet runs every fold of a cohort in one job, and one fold alone gives the same files.

Why: the rule fits all folds in one process (inputs read, scikit-survival imported once; the demo's
five CoxNet jobs took 26 s, one takes 8 s), while a user re-running one fold passes a single
``--fold k --out-dir DIR`` pair; the two must not differ. Real data: 60 GSE7390 patients.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from duopath.cli import app
from duopath.cohort import read_sample_sheet
from duopath.config import CohortConfig, RnaConfig, TeacherConfig
from duopath.demo.gse7390 import write_gse7390
from duopath.rna.build import build_rna
from duopath.training.coxnet_fold import run_coxnet_folds
from duopath.training.splits import make_splits

FOLDS = 3


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("coxnet")
    files = write_gse7390(work)
    sheet = read_sample_sheet(CohortConfig(sample_sheet=files.sheet, rna=files.expression)).iloc[:60]
    sheet_path = work / "canonical.csv"
    sheet.to_csv(sheet_path, index=False)
    rna_path = work / "rna.h5ad"
    build_rna(files.expression, sheet_path, RnaConfig(**files.rna_settings()), rna_path)
    patients = pd.DataFrame({"patient_id": sheet["patient_id"].astype(str), "site": "",
                             "stratum": sheet["event"].astype(str)})
    splits, _ = make_splits(patients, folds=FOLDS, val_fraction=0.2, seed=3, site_disjoint="no")
    splits_path = work / "splits.csv"
    splits.to_csv(splits_path, index=False)
    return {"work": work, "sheet": sheet_path, "rna": rna_path, "splits": splits_path}


def test_one_fold_alone_equals_the_multi_fold_job(cohort: dict[str, Path]) -> None:
    work = cohort["work"]
    cfg = TeacherConfig(device="cpu", time_bins=3)
    metrics = run_coxnet_folds(sheet=cohort["sheet"], splits=cohort["splits"], rna=cohort["rna"],
                               targets=[(k, work / "all" / f"fold{k}") for k in range(FOLDS)],
                               cfg=cfg, seed=7, cohort="gse")
    assert sorted(metrics) == list(range(FOLDS))
    assert {m["fold"] for m in metrics.values()} == set(range(FOLDS))

    alone = work / "alone" / "fold1"
    result = CliRunner().invoke(app, [
        "coxnet", "--sheet", str(cohort["sheet"]), "--splits", str(cohort["splits"]),
        "--rna", str(cohort["rna"]), "--fold", "1", "--out-dir", str(alone), "--seed", "7",
        "--settings", cfg.model_dump_json(), "--cohort", "gse"])
    assert result.exit_code == 0, result.output
    for name in ("predictions.parquet", "inner_predictions.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(alone / name),
                                      pd.read_parquet(work / "all" / "fold1" / name))
    assert (alone / "coxnet.json").read_text() == (work / "all" / "fold1" / "coxnet.json").read_text()


def test_fold_and_out_dir_counts_must_match(cohort: dict[str, Path]) -> None:
    result = CliRunner().invoke(app, [
        "coxnet", "--sheet", str(cohort["sheet"]), "--splits", str(cohort["splits"]),
        "--rna", str(cohort["rna"]), "--fold", "0", "--fold", "1",
        "--out-dir", str(cohort["work"] / "x"), "--settings", TeacherConfig().model_dump_json()])
    assert result.exit_code == 2
    assert "2 --fold but 1 --out-dir" in result.output
