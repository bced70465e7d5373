"""Student training with and without SKD on the synthetic cohort of test_training_trainer.py.

What must hold: both students train and write the fold outputs; the teacher checkpoint is
byte-identical and its weights unchanged after distillation; the KD terms are non-zero for
``student`` and zero for ``student_nokd``; same seed → identical predictions; the checkpoint
rebuilds the student (no genes in it) and carries what predict needs; a wrong-fold teacher is
refused."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_training_trainer import MAGS, cohort, small_cfg, train_files  # noqa: F401  (fixture)

from duopath.checkpoints import load_model
from duopath.config import OptimConfig, StudentConfig
from duopath.layout import FOLD_FILES
from duopath.training.data import DataError
from duopath.training.run import model_spec, run_fold_files

CKPT = FOLD_FILES["checkpoint"]


def load_teacher(path: Path) -> tuple[torch.nn.Module, dict]:
    return load_model(path, ("teacher",))


def load_student(path: Path) -> tuple[torch.nn.Module, dict]:
    return load_model(path, ("student",))

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def student_cfg(**kw: object) -> StudentConfig:
    optim = OptimConfig(epochs=3, batch_size=6, lr=3e-3, warmup_epochs=0, patience=None, eval_batch_size=16)
    return StudentConfig(**{"n_heads": 2, "dropout": 0.0, "max_tiles_train": 6, "optim": optim,
                            "alpha": 1.0, "beta": 1.0, **kw})


@pytest.fixture(scope="module")
def teacher_dir(cohort: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    out = tmp_path_factory.mktemp("teacher")
    train_files(sheet=cohort["sheet"], splits=cohort["splits"], rna=cohort["rna"],
             features_dir=cohort["features"], fold=0, model="teacher", cfg=small_cfg(epochs=2),
             tiled_magnifications=MAGS, task="survival", seed=0, out_dir=out, progress=False)
    return out


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train(cohort: dict, teacher_dir: Path, out: Path, model: str, cfg: StudentConfig | None = None,  # noqa: F811
          seed: int = 0, fold: int = 0) -> dict:
    teacher = teacher_dir / CKPT
    spec = model_spec(model, student=cfg or student_cfg(), teacher_checkpoint=teacher)
    return run_fold_files(spec, sheet=cohort["sheet"], splits=cohort["splits"], rna=cohort["rna"],
                          features_dir=cohort["features"], teacher_checkpoint=teacher, fold=fold,
                          task="survival", seed=seed, out_dir=out, progress=False)


def test_students_train_teacher_untouched_kd_terms(cohort: dict, teacher_dir: Path,  # noqa: F811
                                                   tmp_path: Path) -> None:
    ckpt = teacher_dir / CKPT
    before_sha = sha(ckpt)
    before = {k: v.clone() for k, v in load_teacher(ckpt)[0].state_dict().items()}
    kd = train(cohort, teacher_dir, tmp_path / "kd", "student")
    nokd = train(cohort, teacher_dir, tmp_path / "nokd", "student_nokd")
    assert sha(ckpt) == before_sha
    after = load_teacher(ckpt)[0].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    log_kd = pd.read_csv(tmp_path / "kd" / "train_log.csv")
    log_nokd = pd.read_csv(tmp_path / "nokd" / "train_log.csv")
    assert (log_kd["train_kl_loss"] > 0).all() and (log_kd["train_mse_loss"] > 0).all()
    assert (log_nokd["train_kl_loss"] == 0).all() and (log_nokd["train_mse_loss"] == 0).all()
    np.testing.assert_allclose(log_nokd["train_loss"], log_nokd["train_task_loss"])
    assert not np.allclose(log_kd["train_loss"], log_kd["train_task_loss"])
    # the two students see the same patients (paired): the teacher's, and P05 (a slide, no RNA)
    # wherever its role is (in training: the task loss only)
    assert kd["n_patients"] == nokd["n_patients"]
    teacher_metrics = json.loads((teacher_dir / "metrics.json").read_text())
    assert sum(kd["n_patients"].values()) == sum(teacher_metrics["n_patients"].values()) + 1
    assert "P05" in teacher_metrics["excluded"] and "P05" not in kd["excluded"]
    pred = pd.read_parquet(tmp_path / "kd" / "predictions.parquet")
    teacher_test = set(pd.read_parquet(teacher_dir / "predictions.parquet")["patient_id"])
    assert set(pred["patient_id"]) - teacher_test <= {"P05"} and teacher_test <= set(pred["patient_id"])
    assert np.isfinite(pred["risk"]).all() and np.isfinite(kd["test"]["c_harrell"])
    # checkpoint: rebuilds the student and reproduces its test predictions; no gene information
    model, ck = load_student(tmp_path / "kd" / CKPT)
    assert not any("gene" in k for k in ck) and ck["encoder"] == "synthetic"
    assert ck["weights_id"] == "synthetic:v1" and ck["magnifications"] == MAGS
    assert ck["tiling"]["10x"] == {"mpp": 1.0, "tile_px": 224, "size_um": 224.0}
    assert ck["tiling"]["20x"]["mpp"] == 0.5
    inner = pd.read_parquet(tmp_path / "kd" / "inner_predictions.parquet")
    assert ck["risk_threshold"] == pytest.approx(float(inner.loc[inner.role == "train", "risk"].median()))
    # what `predict` compares a new slide with: the training risks and the training slides' embeddings
    train_risk = inner.loc[inner.role == "train", "risk"].to_numpy(float)
    assert ck["reference"]["risks"] == pytest.approx(sorted(train_risk))
    for m in MAGS:
        ref = ck["reference"]["embedding"][m]
        assert len(ref["centroid"]) == len(ref["scale"]) and len(ref["distances"]) >= len(train_risk)
    assert ck["teacher"]["sha256"] == before_sha and ck["time_bins"] == load_teacher(ckpt)[1]["time_bins"]
    assert type(model).__name__ == "Student"


def test_same_seed_same_predictions(cohort: dict, teacher_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    cfg = student_cfg(optim=OptimConfig(epochs=1, batch_size=6, lr=3e-3, warmup_epochs=0, patience=None,
                                        eval_batch_size=16))
    train(cohort, teacher_dir, tmp_path / "a", "student", cfg, seed=3)
    train(cohort, teacher_dir, tmp_path / "b", "student", cfg, seed=3)
    train(cohort, teacher_dir, tmp_path / "c", "student", cfg, seed=4)
    a, b, c = (pd.read_parquet(tmp_path / x / "predictions.parquet") for x in "abc")
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["risk"], c["risk"])


def test_cached_teacher_targets_match_full_bag_targets(cohort: dict, teacher_dir: Path,  # noqa: F811
                                                       tmp_path: Path) -> None:
    """With full bags the teacher targets are cached; the run must still distil (KD terms > 0)."""
    cfg = student_cfg(max_tiles_train=None, optim=OptimConfig(epochs=2, batch_size=6, lr=3e-3,
                                                              warmup_epochs=0, patience=None,
                                                              eval_batch_size=16))
    train(cohort, teacher_dir, tmp_path / "full", "student", cfg)
    log = pd.read_csv(tmp_path / "full" / "train_log.csv")
    assert (log["train_kl_loss"] > 0).all() and len(log) == 2


def test_wrong_fold_teacher_and_wrong_dim_are_refused(cohort: dict, teacher_dir: Path,  # noqa: F811
                                                      tmp_path: Path) -> None:
    with pytest.raises(DataError, match="fold 0"):
        train(cohort, teacher_dir, tmp_path / "x", "student", fold=1)
    with pytest.raises(ValueError, match="dim"):
        train(cohort, teacher_dir, tmp_path / "y", "student", student_cfg(dim=8))


def test_cli_function(cohort: dict, teacher_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    from duopath.cli.training import train_student

    train_student(sheet=cohort["sheet"], splits=cohort["splits"], rna=cohort["rna"],
                  features_dir=cohort["features"], teacher=[teacher_dir / CKPT], fold=[0],
                  settings=student_cfg(optim=OptimConfig(epochs=1)).model_dump_json(), out_dir=[tmp_path],
                  model="student_nokd", task="survival", seed=1, cohort="synth", threads=0, progress=False)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["model"] == "student_nokd" and m["fold"] == 0 and "c_harrell" in m["test"]


def test_cli_folds_in_one_process_match_each_fold_alone(cohort: dict, teacher_dir: Path,  # noqa: F811
                                                         tmp_path: Path) -> None:
    """Two folds in one `train-student` call (one --teacher per --fold) give each fold the
    predictions it gets alone; a teacher given for the wrong fold is refused, naming its fold."""
    import typer

    from duopath.cli.training import train_student

    teacher1 = tmp_path / "teacher1"
    train_files(sheet=cohort["sheet"], splits=cohort["splits"], rna=cohort["rna"],
                features_dir=cohort["features"], fold=1, model="teacher", cfg=small_cfg(epochs=2),
                tiled_magnifications=MAGS, task="survival", seed=0, out_dir=teacher1, progress=False)
    common = dict(sheet=cohort["sheet"], splits=cohort["splits"], rna=cohort["rna"],
                  features_dir=cohort["features"], model="student", task="survival", seed=2,
                  settings=student_cfg(optim=OptimConfig(epochs=1, batch_size=6)).model_dump_json(),
                  cohort="synth", threads=0, progress=False)
    train_student(teacher=[teacher_dir / CKPT, teacher1 / CKPT], fold=[0, 1],
                  out_dir=[tmp_path / "m0", tmp_path / "m1"], **common)
    train_student(teacher=[teacher1 / CKPT], fold=[1], out_dir=[tmp_path / "a1"], **common)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "m1" / "predictions.parquet"),
                                  pd.read_parquet(tmp_path / "a1" / "predictions.parquet"))
    assert json.loads((tmp_path / "m0" / "metrics.json").read_text())["fold"] == 0
    with pytest.raises(typer.Exit):  # the fold-0 teacher given for fold 1: DataError, exit 1
        train_student(teacher=[teacher1 / CKPT, teacher_dir / CKPT], fold=[0, 1],
                      out_dir=[tmp_path / "x0", tmp_path / "x1"], **common)
    with pytest.raises(typer.BadParameter, match="1 --teacher"):
        train_student(teacher=[teacher1 / CKPT], fold=[0, 1], out_dir=[tmp_path / "y0", tmp_path / "y1"],
                      **common)



def test_in_memory_teacher_frozen_during_distillation(cohort: dict, teacher_dir: Path) -> None:  # noqa: F811
    """The teacher module handed to the loop: eval mode, no gradients, parameters unchanged."""
    import anndata as ad

    from duopath.config import TeacherConfig
    from duopath.training.data import BagStore
    from duopath.training.fold_data import prepare_fold
    from duopath.training.run import ModelSpec, train_fold

    teacher, ck = load_teacher(teacher_dir / CKPT)
    teacher.train()  # the loop must switch it to eval itself
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    tcfg = TeacherConfig.model_validate(ck["settings"])
    sheet = pd.read_csv(cohort["sheet"], dtype={"label": str})
    slides = {p: list(g["slide_id"]) for p, g in sheet.groupby("patient_id")}
    store = BagStore(slides, cohort["features"], MAGS)
    data = prepare_fold(sheet, pd.read_csv(cohort["splits"]), 0, store, ad.read_h5ad(cohort["rna"]),
                        task="survival", cfg=tcfg)
    cfg = student_cfg(optim=OptimConfig(epochs=1, batch_size=6, lr=1e-2, warmup_epochs=0, patience=None))
    train_fold(ModelSpec("student", "student", tuple(MAGS), student=cfg), data, store, teacher=teacher,
               teacher_cfg=tcfg, teacher_dim=ck["model_kwargs"]["dim"], seed=0, progress=False)
    assert not teacher.training
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
