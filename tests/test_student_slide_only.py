"""The student on patients with a slide but no RNA (``student.slide_only_patients``).

What must hold: the teacher is never run on a patient without RNA (its KD terms are masked, its
task loss kept), a mixed batch distils exactly its patients with RNA, ``Batch.select`` is the
collate of the kept rows; the fold keeps every val/test patient with a slide for every student
(so ``student``, ``student_kdonly`` and ``student_nokd`` are scored on the same patients), keeps
training patients without RNA under ``task`` only, and fits the survival bins on the teacher's
training patients; the three students train end to end on a cohort where a third lack RNA.
"""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from test_student_trainer import student_cfg
from test_training_trainer import MAGS, cohort, small_cfg, train_files  # noqa: F401  (fixture)
from torch import nn

from duopath.config import OptimConfig, StudentConfig, TeacherConfig
from duopath.layout import FOLD_FILES
from duopath.models import ModelOutput
from duopath.training.batch import Sample, collate
from duopath.training.data import BagStore, MagBag, PatientBag
from duopath.training.fold_data import FoldData, prepare_fold
from duopath.training.genes import no_genes
from duopath.training.losses import distillation_kl, skd_loss
from duopath.training.objectives import student_step
from duopath.training.run import model_spec, run_fold_files
from duopath.training.variants import student_model_names, student_variant_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

D = 6


def bag(pid: str, n10: int, seed: int) -> PatientBag:
    """A patient's bag without a store: n10 coarse tiles, each with 2 fine children."""
    rng = np.random.default_rng(seed)
    coarse = MagBag(rng.normal(size=(n10, D)).astype(np.float32), rng.random((n10, 2)).astype(np.float32),
                    np.full(n10, -1), np.zeros(n10, np.int16))
    fine = MagBag(rng.normal(size=(2 * n10, D)).astype(np.float32),
                  rng.random((2 * n10, 2)).astype(np.float32), np.repeat(np.arange(n10), 2),
                  np.zeros(2 * n10, np.int16))
    return PatientBag(pid, (pid,), {"10x": coarse, "20x": fine})


def sample(pid: str, target: int, has_rna: bool) -> Sample:
    genes = np.full(2, np.nan if not has_rna else 1.0, np.float32)
    return Sample(pid, genes, genes, target, 1.0, 5.0, "ab"[target], has_rna=has_rna)


def test_select_is_the_collate_of_the_kept_rows() -> None:
    bags = [bag("A", 5, 0), bag("B", 2, 1), bag("C", 3, 2)]
    samples = [sample(b.patient_id, 0, i != 0) for i, b in enumerate(bags)]
    got = collate(samples, bags, MAGS).select([1, 2])
    want = collate(samples[1:], bags[1:], MAGS)
    assert got.patient_ids == want.patient_ids and got.has_rna.tolist() == [True, True]
    for m in MAGS:  # padding trimmed to the longest kept bag (3 coarse tiles, not A's 5)
        for name in ("feats", "mask", "coords", "parent"):
            assert torch.equal(getattr(got, name)[m], getattr(want, name)[m]), (m, name)
    assert torch.equal(got.targets, want.targets) and torch.equal(got.genes_T, want.genes_T)


def output(logits: torch.Tensor, emb: torch.Tensor) -> ModelOutput:
    return ModelOutput(logits=logits, logits_by_mag={"20x": logits},
                       embeddings={"20x": {"T": emb[:, :2], "E": emb[:, 2:]}}, attention={},
                       confidence={}, gate_weights=torch.ones(len(logits), 1))


def test_skd_masks_the_kd_terms_of_rows_without_rna() -> None:
    """KD summed over the distilled rows / B; row 1 (no RNA) gets the task gradient only."""
    torch.manual_seed(0)
    s_logits = torch.randn(3, 2, requires_grad=True)
    s_emb = torch.randn(3, 4, requires_grad=True)
    t_logits, t_emb = torch.randn(2, 2), torch.randn(2, 4)  # the teacher ran on rows 0 and 2
    rows = torch.tensor([0, 2])
    res = skd_loss(output(s_logits, s_emb), output(t_logits, t_emb), lambda z: z.pow(2).sum(),
                   task="classification", alpha=0.5, beta=0.1, temperature=2.0, kd_rows=rows)
    kl = distillation_kl(s_logits[rows], t_logits, "classification", 2.0, reduction="none").sum() / 3
    mse = ((s_emb[rows] - t_emb) ** 2).mean(dim=1).sum() / 3
    assert res.kl.item() == pytest.approx(kl.item(), rel=1e-6)
    assert res.mse.item() == pytest.approx(mse.item(), rel=1e-6)
    assert res.task.item() == pytest.approx(s_logits.pow(2).sum().item(), rel=1e-6)
    res.total.backward()
    torch.testing.assert_close(s_logits.grad[1], 2 * s_logits[1].detach())  # d(task)/dz only
    assert torch.all(s_emb.grad[1] == 0) and torch.all(s_emb.grad[0] != 0)
    # every row distilled: the same as the unmasked loss
    full = output(torch.cat([t_logits[:1], t_logits]), torch.cat([t_emb[:1], t_emb]))
    a = skd_loss(output(s_logits, s_emb), full, lambda z: z.sum(), task="classification")
    b = skd_loss(output(s_logits, s_emb), full, lambda z: z.sum(), task="classification",
                 kd_rows=torch.arange(3))
    assert a.total.item() == pytest.approx(b.total.item(), rel=1e-6)


class TinyStudent(nn.Module):
    """Mean-pooled tiles -> logits and a [T ; E] embedding (the student's output contract)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.head = nn.Linear(D, 4), nn.Linear(4, 2)

    def forward(self, feats, mask, coords) -> ModelOutput:
        m = "20x"
        k = mask[m].unsqueeze(-1).float()
        emb = self.emb((feats[m] * k).sum(1) / k.sum(1).clamp(min=1))
        return output(self.head(emb), emb)


class RecordingTeacher:
    """Stands in for ``TeacherTargets``: records whom it was asked about, answers fixed targets."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    def __call__(self, chunk, batch) -> ModelOutput:
        self.asked.append([s.patient_id for s in chunk])
        assert not torch.isnan(batch.genes_T).any(), "the teacher got a patient without RNA"
        n = len(chunk)
        return output(torch.ones(n, 2), torch.ones(n, 4))


def test_student_step_never_asks_the_teacher_about_patients_without_rna() -> None:
    torch.manual_seed(0)
    bags = [bag(p, 3, i) for i, p in enumerate("ABCD")]
    samples = [sample("A", 0, True), sample("B", 1, False), sample("C", 1, True), sample("D", 0, False)]
    batch = collate(samples, bags, MAGS)
    data = FoldData(fold=0, task="classification", samples={}, genes=no_genes([]),
                    class_names=["a", "b"], class_weights=torch.ones(2))
    model, teacher = TinyStudent(), RecordingTeacher()
    cfg = StudentConfig(alpha=1.0, beta=1.0, temperature=1.0)
    step = student_step(model, data, cfg, TeacherConfig(), ["20x"], teacher)(samples, batch)
    assert teacher.asked == [["A", "C"]]
    out = model(batch.feats, batch.mask, batch.coords)
    rows = torch.tensor([0, 2])
    kl = distillation_kl(out.logits[rows], torch.ones(2, 2), "classification", 1.0, reduction="none")
    mse = ((out.joint_embedding("20x")[rows] - 1.0) ** 2).mean(dim=1)
    logs = {k: float(v.detach() if isinstance(v, torch.Tensor) else v) for k, v in step.logs.items()}
    assert logs["train_kl_loss"] == pytest.approx(float(kl.sum().detach()) / 4, rel=1e-5)
    assert logs["train_mse_loss"] == pytest.approx(float(mse.sum().detach()) / 4, rel=1e-5)
    task = nn.functional.cross_entropy(out.logits, batch.targets)  # all four patients
    assert logs["train_task_loss"] == pytest.approx(float(task.detach()), rel=1e-5)
    # a batch of patients without RNA only: the teacher is not called, KD terms are zero
    none = student_step(model, data, cfg, TeacherConfig(), ["20x"], teacher)(
        [samples[1], samples[3]], collate([samples[1], samples[3]], [bags[1], bags[3]], MAGS))
    assert teacher.asked == [["A", "C"]] and none.logs["train_kl_loss"] == 0.0


# --------------------------------------------------------------------------- folds and training


@pytest.fixture(scope="module")
def mixed_rna(cohort: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """The synthetic cohort's RNA with a third of the patients dropped (P05 already has none)."""
    adata = ad.read_h5ad(cohort["rna"])
    drop = [p for p in adata.obs_names if int(p[1:]) % 3 == 1]
    keep = adata[[p not in drop for p in adata.obs_names]].copy()
    keep.uns["patients_without_rna"] = np.array(sorted([*drop, "P05"]), dtype=object)
    path = tmp_path_factory.mktemp("mixed_rna") / "rna.h5ad"
    keep.write_h5ad(path)
    return path


def fold_of(cohort: dict, rna: Path, student: str | None, missing_rna: str = "exclude"):  # noqa: F811
    sheet = pd.read_csv(cohort["sheet"], dtype={"label": str})
    slides = {p: list(g["slide_id"]) for p, g in sheet.groupby("patient_id")}
    store = BagStore(slides, cohort["features"], MAGS)
    cfg = small_cfg().model_copy(update={"missing_rna": missing_rna})
    return prepare_fold(sheet, pd.read_csv(cohort["splits"]), 0, store, ad.read_h5ad(rna),
                        task="survival", cfg=cfg, student=student)


def ids(data, role: str) -> set[str]:
    return {s.patient_id for s in data.samples[role]}


def test_fold_patients_of_the_teacher_and_of_each_student_setting(cohort: dict,  # noqa: F811
                                                                  mixed_rna: Path) -> None:
    teacher, task, exclude = (fold_of(cohort, mixed_rna, s) for s in (None, "task", "exclude"))
    no_rna = {s.patient_id for r in ("train", "val", "test") for s in task.samples[r] if not s.has_rna}
    assert no_rna and all(s.has_rna for r in ("train", "val", "test") for s in teacher.samples[r])
    for role in ("val", "test"):  # every student: every patient with a slide
        assert ids(task, role) == ids(exclude, role) == ids(teacher, role) | (ids(task, role) & no_rna)
        assert ids(task, role) & no_rna
    assert ids(exclude, "train") == ids(teacher, "train")
    assert ids(task, "train") == ids(teacher, "train") | (ids(task, "train") & no_rna)
    assert ids(task, "train") & no_rna
    np.testing.assert_array_equal(task.time_bins, teacher.time_bins)  # the teacher's output space
    np.testing.assert_array_equal(exclude.time_bins, teacher.time_bins)
    assert task.genes.genes_T == teacher.genes.genes_T
    pd.testing.assert_series_equal(task.genes.mean, teacher.genes.mean)  # scaler: patients with RNA
    gone = next(s for s in task.samples["train"] if not s.has_rna)
    assert np.isnan(gone.genes_T).all()
    assert exclude.excluded[gone.patient_id].startswith("no RNA, in training")
    assert gone.patient_id not in task.excluded


def test_imputed_rna_counts_as_slide_only_for_the_student(cohort: dict, mixed_rna: Path) -> None:  # noqa: F811
    """Under teacher.missing_rna: mean the teacher trains on imputed patients; a student marks them
    without RNA (no KD), and with exclude leaves them out -- still on the teacher's bins."""
    teacher, exclude = (fold_of(cohort, mixed_rna, s, "mean") for s in (None, "exclude"))
    imputed = {s.patient_id for s in teacher.samples["train"] if not s.has_rna}
    assert imputed and all(np.isfinite(s.genes_T).all() for s in teacher.samples["train"])
    assert ids(exclude, "train") == ids(teacher, "train") - imputed
    np.testing.assert_array_equal(exclude.time_bins, teacher.time_bins)


def test_student_variants_names_and_settings() -> None:
    cfg = StudentConfig(ablations=["kdonly"])
    assert student_model_names(cfg) == ["student", "student_nokd", "student_kdonly"]
    assert student_model_names(StudentConfig()) == ["student", "student_nokd"]
    assert student_variant_config(cfg, "student_kdonly").slide_only_patients == "exclude"
    assert student_variant_config(cfg, "student").slide_only_patients == "task"
    with pytest.raises(ValueError, match="kdonly"):
        StudentConfig(slide_only_patients="exclude", ablations=["kdonly"])


def test_three_students_train_on_a_cohort_where_a_third_lack_rna(cohort: dict, mixed_rna: Path,  # noqa: F811
                                                                 tmp_path: Path) -> None:
    common = dict(sheet=cohort["sheet"], splits=cohort["splits"], rna=mixed_rna,
                  features_dir=cohort["features"], fold=0, task="survival", seed=0, progress=False)
    teacher = train_files(model="teacher", cfg=small_cfg(epochs=2), tiled_magnifications=MAGS,
                          out_dir=tmp_path / "teacher", **common)
    ckpt = tmp_path / "teacher" / FOLD_FILES["checkpoint"]
    cfg = student_cfg(ablations=["kdonly"], optim=OptimConfig(epochs=2, batch_size=6, lr=3e-3,
                                                              warmup_epochs=0, eval_batch_size=16))
    metrics, preds = {}, {}
    for model in ("student", "student_kdonly", "student_nokd"):
        spec = model_spec(model, student=cfg, teacher_checkpoint=ckpt)
        metrics[model] = run_fold_files(spec, out_dir=tmp_path / model, teacher_checkpoint=ckpt, **common)
        preds[model] = set(pd.read_parquet(tmp_path / model / "predictions.parquet")["patient_id"])
        assert np.isfinite(metrics[model]["test"]["c_harrell"])
    kd, kdonly, nokd = (metrics[m] for m in ("student", "student_kdonly", "student_nokd"))
    # the same validation and test patients for every student: a paired comparison
    assert preds["student"] == preds["student_kdonly"] == preds["student_nokd"]
    for r in ("val", "test"):
        assert kd["n_patients"][r] == kdonly["n_patients"][r] == nokd["n_patients"][r]
    teacher_test = set(pd.read_parquet(tmp_path / "teacher" / "predictions.parquet")["patient_id"])
    assert teacher_test < preds["student"]
    assert kd["n_test_without_rna"] == len(preds["student"] - teacher_test)
    # training: the slide-only patients only under `task`
    assert kd["n_train_without_rna"] > 0 and nokd["n_train_without_rna"] == kd["n_train_without_rna"]
    assert kdonly["n_train_without_rna"] == 0
    assert kd["n_patients"]["train"] == kdonly["n_patients"]["train"] + kd["n_train_without_rna"]
    assert kdonly["n_patients"]["train"] == teacher["n_patients"]["train"]
    assert kd["slide_only_patients"] == "task" and kdonly["slide_only_patients"] == "exclude"
    log = pd.read_csv(tmp_path / "student" / "train_log.csv")
    assert (log["train_kl_loss"] > 0).all() and (log["train_mse_loss"] > 0).all()
    ck = json.loads((tmp_path / "student_kdonly" / "metrics.json").read_text())
    assert any(v.startswith("no RNA, in training") for v in ck["excluded"].values())
