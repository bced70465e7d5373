"""Teacher training on one fold: a synthetic cohort (zarr stores in the extractor's layout, an
RNA AnnData, a sample sheet and real splits) with a planted signal.

What must hold: it beats chance; same seed → identical predictions; the test fold never
influences training or selection (and is read once, at the end); survival bins, class weights
and the RNA scaler come from the training fold; no patient is in two roles; the checkpoint
rebuilds the model and reproduces the predictions; ablation names map to settings."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_training_data import D, grid, rna_adata, write_store

from duopath.checkpoints import load_model
from duopath.config import OptimConfig, TeacherConfig
from duopath.layout import FOLD_FILES, FoldPaths
from duopath.training.data import BagStore, DataError
from duopath.training.fold_data import fit_bins, fold_roles, prepare_fold
from duopath.training.loop import lr_factor
from duopath.training.losses import fit_time_bins
from duopath.training.run import (
    FoldTarget,
    ModelSpec,
    model_spec,
    run_fold_files,
    run_folds_files,
    train_fold,
)
from duopath.training.selection import score_predictions
from duopath.training.splits import make_splits
from duopath.training.variants import model_names, variant_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MAGS = ["10x", "20x"]
N_PATIENTS = 48
N_T, N_E = 6, 5


def teacher_spec(cfg: TeacherConfig, model: str = "teacher") -> ModelSpec:
    """The spec of a resolved teacher config (what ``model_spec`` makes from a model name)."""
    return ModelSpec(model, "teacher", tuple(cfg.magnifications or MAGS), teacher=cfg)


def train_files(*, model: str, cfg: TeacherConfig, tiled_magnifications: list[str] = MAGS,
                baselines: object = None, **kw: object) -> dict:
    """Spec from the model name, then the one runner (what ``duopath train`` does)."""
    spec = model_spec(model, teacher=cfg, baselines=baselines, tiled_magnifications=tiled_magnifications)
    return run_fold_files(spec, **kw)


def small_cfg(**optim: object) -> TeacherConfig:
    base = {"epochs": 12, "batch_size": 6, "lr": 3e-3, "warmup_epochs": 1, "patience": None,
            "eval_batch_size": 16}
    return TeacherConfig(dim=16, n_heads=2, n_gene_tokens=2, gene_hidden=16, dropout=0.0,
                         attention="cross", magnifications=MAGS, max_tiles_train=6,
                         optim=OptimConfig(**{**base, **optim}))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return build_cohort(tmp_path_factory.mktemp("cohort"))


def build_cohort(root: Path, n_patients: int = N_PATIENTS, noise_20x: bool = False) -> dict:
    """48 patients, 4 sites, 1-2 slides each; hidden z drives tumour-tile share, the T genes,
    the hazard and the label. One patient has no RNA, one only a failed slide. ``noise_20x``:
    the 20x features are pure noise (only the 10x expert can see z)."""
    feats_dir = root / "features"
    feats_dir.mkdir()
    rng = np.random.default_rng(42)
    z = rng.normal(size=n_patients)
    tumour = rng.normal(size=D)
    rows = []
    for i in range(n_patients):
        pid = f"P{i:02d}"
        n_slides = 1 + int(i % 3 == 0)
        share = 1.0 / (1.0 + math.exp(-2.0 * z[i]))
        for k in range(n_slides):
            sid = f"{pid}-{k}"
            t10 = grid(3, 2 + (i % 3), origin=(1000 * k, 500))
            is_t = rng.random(len(t10)) < share
            f10 = rng.normal(size=(len(t10), D)) * 0.5 + is_t[:, None] * tumour
            f20 = np.repeat(f10, 4, axis=0) + rng.normal(size=(4 * len(t10), D)) * 0.3
            if noise_20x:
                f20 = rng.normal(size=f20.shape)
            status = "failed" if i == 7 else "ok"
            write_store(feats_dir / f"{sid}.zarr", t10, f10, f20, status=status)
            rows.append({"patient_id": pid, "slide_id": sid, "site": f"S{i % 4}"})
    times = np.round(np.exp(-1.5 * z + 0.2 * rng.normal(size=n_patients)) * 20 + 1, 2)
    events = (rng.random(n_patients) < 0.85).astype(int)
    labels = np.where(z > np.median(z), "high", "low")
    outcome = pd.DataFrame({"patient_id": [f"P{i:02d}" for i in range(n_patients)], "time": times,
                            "event": events, "label": labels})
    sheet = pd.DataFrame(rows).merge(outcome, on="patient_id")
    sheet["rna_sample_id"] = sheet["patient_id"] + "-R"
    sheet["slide_path"] = "unused.tiff"
    sheet["mpp"] = ""
    sheet_path = root / "samples.csv"
    sheet.to_csv(sheet_path, index=False)
    patients = sheet.drop_duplicates("patient_id")[["patient_id", "site"]].copy()
    patients["stratum"] = patients["patient_id"].map(dict(zip(outcome.patient_id, outcome.event.astype(str),
                                                              strict=True)))
    splits, _ = make_splits(patients.reset_index(drop=True), folds=3, val_fraction=0.25, seed=0,
                            site_disjoint="no")
    splits_path = root / "splits.csv"
    splits.to_csv(splits_path, index=False)
    with_rna = [p for p in outcome.patient_id if p != "P05"]
    idx = [int(p[1:]) for p in with_rna]
    genes = np.concatenate([z[idx, None] + 0.3 * rng.normal(size=(len(idx), N_T)),
                            rng.normal(size=(len(idx), N_E))], axis=1)
    adata = rna_adata(with_rna, genes, N_T, without=["P05"])
    rna_path = root / "rna.h5ad"
    adata.write_h5ad(rna_path)
    return {"root": root, "features": feats_dir, "sheet": sheet_path, "splits": splits_path,
            "rna": rna_path, "z": dict(zip(outcome.patient_id, z, strict=True))}


def load(cohort: dict) -> tuple[pd.DataFrame, pd.DataFrame, BagStore, object]:
    import anndata as ad

    sheet = pd.read_csv(cohort["sheet"], dtype={"label": str})
    splits = pd.read_csv(cohort["splits"])
    slides = {p: list(g["slide_id"]) for p, g in sheet.groupby("patient_id")}
    return sheet, splits, BagStore(slides, cohort["features"], MAGS), ad.read_h5ad(cohort["rna"])


def fit(cohort: dict, task: str = "survival", cfg: TeacherConfig | None = None, seed: int = 0,
        fold: int = 0, sheet: pd.DataFrame | None = None, store: BagStore | None = None):
    s, splits, st, adata = load(cohort)
    cfg = cfg or small_cfg()
    data = prepare_fold(s if sheet is None else sheet, splits, fold, store or st, adata, task=task, cfg=cfg)
    return data, train_fold(teacher_spec(cfg), data, store or st, seed=seed, progress=False)


def test_fold_exclusions_roles_and_training_only_fits(cohort: dict) -> None:
    sheet, splits, store, adata = load(cohort)
    data = prepare_fold(sheet, splits, 0, store, adata, task="survival", cfg=small_cfg())
    ids = {r: {s.patient_id for s in v} for r, v in data.samples.items()}
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"])
    assert not (ids["val"] & ids["test"])
    assert "P07" not in set().union(*ids.values())  # only a failed slide
    assert "P05" not in set().union(*ids.values())  # no RNA (missing_rna: exclude)
    train = sheet.drop_duplicates("patient_id").set_index("patient_id").loc[sorted(ids["train"])]
    np.testing.assert_allclose(data.time_bins, fit_time_bins(train["time"], train["event"], 4))
    # leak test: scrambling the held-out patients' times changes no bin edge
    held = ids["val"] | ids["test"]
    moved = sheet.copy()
    moved.loc[moved["patient_id"].isin(held), "time"] *= 50.0
    again = prepare_fold(moved, splits, 0, store, adata, task="survival", cfg=small_cfg())
    np.testing.assert_array_equal(again.time_bins, data.time_bins)
    # ... while moving a training patient's time does change them
    moved2 = sheet.copy()
    moved2.loc[moved2["patient_id"].isin(ids["train"]), "time"] *= 3.0
    third = prepare_fold(moved2, splits, 0, store, adata, task="survival", cfg=small_cfg())
    assert not np.allclose(third.time_bins[1:-1], data.time_bins[1:-1])
    # classification: class weights from the training labels
    cls = prepare_fold(sheet, splits, 0, store, adata, task="classification", cfg=small_cfg())
    counts = train["label"].value_counts()
    expected = [len(train) / (2 * counts[c]) for c in cls.class_names]
    np.testing.assert_allclose(cls.class_weights.numpy(), expected, rtol=1e-6)
    # missing_rna: mean keeps the patient without RNA, with the training-mean genes
    imputed = prepare_fold(sheet, splits, 0, store, adata, task="survival",
                           cfg=small_cfg().model_copy(update={"missing_rna": "mean"}))
    assert imputed.genes.imputed == ["P05"]


def test_time_bins_shrink_when_the_training_fold_is_small(caplog: pytest.LogCaptureFixture) -> None:
    times, events = np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([1, 1, 1, 0, 0])
    with caplog.at_level("WARNING"):
        edges = fit_bins(times, events, 4, fold=0)
    assert len(edges) == 4 and "3 survival bins instead of 4" in caplog.text
    np.testing.assert_allclose(edges, fit_time_bins(times, events, 3))
    np.testing.assert_allclose(fit_bins(np.arange(1.0, 9.0), np.ones(8, int), 4, 0),
                               fit_time_bins(np.arange(1.0, 9.0), np.ones(8), 4))
    with pytest.raises(DataError, match="cannot fit 2 survival time bins"):
        fit_bins(times, np.array([1, 0, 0, 0, 0]), 4, fold=0)


def test_patient_in_two_roles_is_an_error(cohort: dict) -> None:
    sheet, splits, store, adata = load(cohort)
    f0 = splits[splits["fold"] == 0]
    victim = f0[f0["role"] == "test"].iloc[0]
    bad = pd.concat([splits, victim.to_frame().T.assign(role="train")], ignore_index=True)
    with pytest.raises(DataError, match=f"{victim['patient_id']} \\(t"):
        prepare_fold(sheet, bad, 0, store, adata, task="survival", cfg=small_cfg())
    roles = fold_roles(splits, 1)
    assert sum(len(v) for v in roles.values()) == len(set().union(*map(set, roles.values())))
    with pytest.raises(DataError, match="fold 9"):
        fold_roles(splits, 9)


@pytest.mark.parametrize("task,metric", [("survival", "c_harrell"), ("classification", "auc")])
def test_teacher_learns_the_planted_signal(cohort: dict, task: str, metric: str) -> None:
    data, res = fit(cohort, task)
    assert res.test_scores[metric] >= 0.75, res.test_scores
    log = res.log
    assert list(log.columns[:8]) == ["epoch", "lr", "train_loss", "train_task_loss", "train_igc_loss",
                                     "cgc_projected_rows", "val_loss", "val_metric"]
    assert log["train_loss"].iloc[-3:].mean() < log["train_loss"].iloc[:2].mean()
    assert int(log.loc[log["selected"], "epoch"].iloc[0]) == res.best_epoch
    assert set(res.predictions["patient_id"]) == {s.patient_id for s in data.samples["test"]}
    assert set(res.inner_predictions["role"]) == {"train", "val"}


def test_same_seed_same_predictions_other_seed_differs(cohort: dict) -> None:
    cfg = small_cfg(epochs=3).model_copy(update={"dropout": 0.2})
    _, a = fit(cohort, cfg=cfg, seed=5)
    _, b = fit(cohort, cfg=cfg, seed=5)
    _, c = fit(cohort, cfg=cfg, seed=6)
    pd.testing.assert_frame_equal(a.predictions, b.predictions)
    pd.testing.assert_frame_equal(a.log.drop(columns="seconds"), b.log.drop(columns="seconds"))
    assert not np.allclose(a.predictions["risk"], c.predictions["risk"])


def permute_outcomes(sheet: pd.DataFrame, patients: list[str], scale: float = 1.0) -> pd.DataFrame:
    """Reverse the order of ``patients``' (time × scale, 1 - event), per patient (all slides)."""
    per = sheet.drop_duplicates("patient_id").set_index("patient_id").loc[patients]
    time = dict(zip(patients, per["time"].to_numpy()[::-1] * scale, strict=True))
    event = dict(zip(patients, 1 - per["event"].to_numpy()[::-1], strict=True))
    out = sheet.copy()
    sel = out["patient_id"].isin(patients)
    out.loc[sel, "time"] = out.loc[sel, "patient_id"].map(time)
    out.loc[sel, "event"] = out.loc[sel, "patient_id"].map(event)
    return out


class RecordingStore(BagStore):
    """A BagStore that records which patients' bags are requested, in order."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.requests: list[str] = []

    def get(self, patient_id: str):
        self.requests.append(patient_id)
        return super().get(patient_id)


def test_test_fold_is_read_once_at_the_end_and_cannot_steer_selection(cohort: dict) -> None:
    sheet, _, _, _ = load(cohort)
    slides = {p: list(g["slide_id"]) for p, g in sheet.groupby("patient_id")}
    cfg = small_cfg(epochs=6, patience=2)
    store = RecordingStore(slides, cohort["features"], MAGS)
    data, res = fit(cohort, cfg=cfg, seed=3, store=store)
    test_ids = [s.patient_id for s in data.samples["test"]]
    n = len(test_ids)
    assert store.requests[-n:] == test_ids
    assert not set(store.requests[:-n]) & set(test_ids)
    # Scramble the test patients' outcomes: training, the log and the selected epoch must not move.
    scrambled = permute_outcomes(sheet, test_ids, scale=7.0)
    _, res2 = fit(cohort, cfg=cfg, seed=3, sheet=scrambled)
    assert res2.best_epoch == res.best_epoch
    pd.testing.assert_frame_equal(res.log.drop(columns="seconds"), res2.log.drop(columns="seconds"))
    np.testing.assert_array_equal(res.predictions["risk"], res2.predictions["risk"])
    # ...whereas the validation patients' outcomes DO steer selection (the check can fail)
    val_ids = [s.patient_id for s in data.samples["val"]]
    moved = permute_outcomes(sheet, val_ids)
    _, res3 = fit(cohort, cfg=cfg, seed=3, sheet=moved)
    assert not np.allclose(res3.log["val_loss"], res.log["val_loss"][: len(res3.log)])


def test_outputs_and_checkpoint_reproduce_predictions(cohort: dict, tmp_path: Path) -> None:
    cfg = small_cfg(epochs=3)
    metrics = train_files(sheet=cohort["sheet"], splits=cohort["splits"], rna=cohort["rna"],
                       features_dir=cohort["features"], fold=1, model="teacher_rna_mean", cfg=cfg,
                       tiled_magnifications=MAGS, task="classification", seed=0, out_dir=tmp_path,
                       cohort="synth", progress=False)
    paths = FoldPaths(tmp_path)
    for p in (paths.checkpoint, paths.predictions, paths.inner_predictions, paths.metrics, paths.train_log):
        assert p.exists(), p
    assert not list(tmp_path.glob(".*tmp-*"))
    on_disk = json.loads(paths.metrics.read_text())
    assert on_disk["model"] == "teacher_rna_mean" and on_disk["fold"] == 1
    assert on_disk["test"]["auc"] == pytest.approx(metrics["test"]["auc"])
    assert on_disk["excluded"] == {"P05": "no RNA (teacher.missing_rna: exclude)", "P07": "no usable slide"}
    preds = pd.read_parquet(paths.predictions)
    assert {"patient_id", "fold", "risk", "time", "event", "label", "prob_high", "prob_low",
            "pred_label", "gate_10x", "gate_20x"} <= set(preds.columns)
    assert len(pd.read_csv(paths.train_log)) == 3

    model, ckpt = load_model(paths.checkpoint, ("teacher",))
    assert ckpt["class_names"] == ["high", "low"] and ckpt["encoder"] == "synthetic"
    assert ckpt["magnifications"] == MAGS and ckpt["feature_dim"] == D and ckpt["model_kwargs"]["rna_mean_T"]
    # Rebuild the inputs from the checkpoint alone (scaler, genes) and reproduce the test predictions.
    import anndata as ad

    from duopath.training.batch import Sample, collate

    adata = ad.read_h5ad(cohort["rna"])
    genes = ckpt["genes_T"] + ckpt["genes_E"]
    ids = preds["patient_id"].tolist()
    z = (np.asarray(adata[ids, genes].X) - np.asarray(ckpt["scaler_mean"])) / np.asarray(ckpt["scaler_std"])
    nt = len(ckpt["genes_T"])
    sheet = pd.read_csv(cohort["sheet"])
    slides = {p: list(g["slide_id"]) for p, g in sheet.groupby("patient_id")}
    store = BagStore(slides, cohort["features"], MAGS)
    samples = [Sample(p, z[i, :nt].astype(np.float32), z[i, nt:].astype(np.float32), 0, 0.0, 0.0)
               for i, p in enumerate(ids)]
    batch = collate(samples, [store.get(p) for p in ids], MAGS)
    with torch.no_grad():
        out = model(batch.feats, batch.mask, batch.coords, batch.genes_T, batch.genes_E)
    probs = torch.softmax(out.logits, -1).numpy()
    np.testing.assert_allclose(probs[:, 0], preds["prob_high"], rtol=1e-4, atol=1e-5)


def test_write_fold_is_atomic_on_failure(cohort: dict, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    data, res = fit(cohort, cfg=small_cfg(epochs=1))
    _, _, store, _ = load(cohort)
    import duopath.training.outputs as out

    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(out, "write_json", boom)
    meta = out.common_meta(res, data, store, model_name="teacher", variant="teacher", mags=MAGS, settings={},
                           seed=0)
    with pytest.raises(RuntimeError):
        out.write_fold_outputs(FoldPaths(tmp_path), res, data, store, kind="teacher", meta=meta, cohort="c",
                               model="teacher", seed=0, selection="val_loss", extra_metrics={})
    assert not (tmp_path / "metrics.json").exists()  # no metrics → the fold is not complete
    assert not list(tmp_path.glob(".*tmp-*"))


def test_variant_names_map_to_settings() -> None:
    cfg = TeacherConfig(ablations=["no_cgc", "no_igc", "one_group", "rna_mean", "10x"])
    names = model_names(cfg)
    assert names == ["teacher", "teacher_no_cgc", "teacher_no_igc", "teacher_one_group",
                     "teacher_rna_mean", "teacher_10x"]
    v = {n: variant_config(cfg, n, MAGS) for n in names}
    assert v["teacher"].magnifications == MAGS and v["teacher"].cgc and v["teacher"].igc == "diagonal"
    assert not v["teacher_no_cgc"].cgc and v["teacher_no_igc"].igc == "none"
    assert not v["teacher_one_group"].disentangle and v["teacher_rna_mean"].rna_mean
    assert v["teacher_10x"].magnifications == ["10x"]
    for bad in ("teacher_40x", "teacher_nope", "student"):
        with pytest.raises(ValueError):
            variant_config(cfg, bad, MAGS)
    with pytest.raises(ValueError, match="ablation"):
        TeacherConfig(ablations=["no cgc"])


def test_single_magnification_and_one_group_ablations_train(cohort: dict) -> None:
    for model in ("teacher_20x", "teacher_one_group", "teacher_no_cgc"):
        cfg = variant_config(small_cfg(epochs=2), model, MAGS)
        _, res = fit(cohort, cfg=cfg)
        gates = [c for c in res.predictions.columns if c.startswith("gate_")]
        assert gates == [f"gate_{m}" for m in cfg.magnifications]
        assert res.log["train_igc_loss"].eq(0).all() == (len(cfg.magnifications) == 1)
        assert res.log["cgc_projected_rows"].isna().all() == (not cfg.cgc)


def test_lr_warmup_then_cosine_by_epoch() -> None:
    f = [lr_factor(e, epochs=10, warmup=2, min_ratio=0.1) for e in range(10)]
    assert f[0] == pytest.approx(1 / 3) and f[1] == pytest.approx(2 / 3) and f[2] == pytest.approx(1.0)
    assert f[-1] == pytest.approx(0.1) and all(a >= b for a, b in itertools.pairwise(f[2:]))
    assert lr_factor(0, epochs=1, warmup=0, min_ratio=0.0) == pytest.approx(1.0)


def test_scores_match_sksurv_and_sklearn() -> None:
    from sklearn.metrics import roc_auc_score
    from sksurv.metrics import concordance_index_censored

    rng = np.random.default_rng(0)
    n = 30
    frame = pd.DataFrame({"time": rng.uniform(1, 50, n), "event": rng.integers(0, 2, n).astype(float),
                          "risk": rng.normal(size=n), "label": rng.choice(["a", "b", "c"], n)})
    c = concordance_index_censored(frame["event"].astype(bool), frame["time"], frame["risk"])[0]
    assert score_predictions("survival", frame)["c_harrell"] == pytest.approx(c)
    p = rng.dirichlet(np.ones(3), n)
    for i, k in enumerate("abc"):
        frame[f"prob_{k}"] = p[:, i]
    auc = roc_auc_score(frame["label"].map({"a": 0, "b": 1, "c": 2}), p, multi_class="ovr")
    assert score_predictions("classification", frame, ["a", "b", "c"])["auc"] == pytest.approx(auc)
    censored = frame.assign(event=0.0)
    undefined = score_predictions("survival", censored)
    assert math.isnan(undefined["c_harrell"]) and "no events" in undefined["undefined"]["c_harrell"]


def test_cli_train_function(cohort: dict, tmp_path: Path) -> None:
    from duopath.cli.training import train

    train(sheet=cohort["sheet"], splits=cohort["splits"], rna=cohort["rna"], features_dir=cohort["features"],
          fold=[2], settings=small_cfg(epochs=1).model_dump_json(), out_dir=[tmp_path],
          model="teacher_no_igc",
          task="survival", magnifications="10x,20x", seed=1, cohort="synth", threads=0, progress=False)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["model"] == "teacher_no_igc" and m["fold"] == 2
    assert {"c_harrell", "c_uno", "td_auc_mean", "ibs"} <= set(m["test"])


def test_folds_in_one_process_match_each_fold_alone(cohort: dict, tmp_path: Path) -> None:
    """`duopath train --fold 1 --out-dir A --fold 0 --out-dir B` (what a rule runs: the inputs read
    once, folds in turn) writes each fold's outputs where asked, with exactly the predictions and
    metrics of that fold trained alone -- so one fold can be re-run by itself."""
    import typer

    from duopath.cli.training import train

    common = dict(sheet=cohort["sheet"], splits=cohort["splits"], rna=cohort["rna"],
                  features_dir=cohort["features"], settings=small_cfg(epochs=2).model_dump_json(),
                  model="teacher", task="classification", magnifications="10x,20x", seed=5,
                  cohort="synth", threads=0, progress=False)
    train(fold=[1, 0], out_dir=[tmp_path / "multi1", tmp_path / "multi0"], **common)
    train(fold=[0], out_dir=[tmp_path / "alone0"], **common)
    for name in ("multi1", "multi0", "alone0"):
        assert {p.name for p in (tmp_path / name).iterdir()} == set(FOLD_FILES.values())
    assert json.loads((tmp_path / "multi1/metrics.json").read_text())["fold"] == 1
    multi, alone = (pd.read_parquet(tmp_path / d / "predictions.parquet") for d in ("multi0", "alone0"))
    pd.testing.assert_frame_equal(multi, alone)
    m, a = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("multi0", "alone0"))
    assert m["test"] == a["test"] and m["fold"] == a["fold"] == 0
    with pytest.raises(typer.BadParameter, match="2 --fold but 1 --out-dir"):
        train(fold=[0, 1], out_dir=[tmp_path / "x"], **common)
    with pytest.raises(ValueError, match="more than once"):
        run_folds_files(model_spec("teacher", teacher=small_cfg(), tiled_magnifications=MAGS),
                        [FoldTarget(0, tmp_path / "y"), FoldTarget(0, tmp_path / "z")],
                        sheet=cohort["sheet"], splits=cohort["splits"], rna=cohort["rna"],
                        features_dir=cohort["features"], task="survival", seed=0)

