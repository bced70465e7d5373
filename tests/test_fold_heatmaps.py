"""Fold heatmaps for the report: a hand-made teacher whose T attention goes to the one tile with
feature 0 set and whose E attention to the one with feature 1 set, over the real CMU slide as
thumbnail; a tiny student; feature stores in the extractor's layout.

What must hold: one figure per patient and slide at the finest magnification with the T and E
maps (student: ω and clusters) side by side at the thumbnail's size, colour bars / legend and a
title saying why the patient was chosen; the planted tiles get the top colour of the T / E map at
their place on the thumbnail and a low tile does not; the index lists every image; a missing slide
file is skipped with a warning naming it; patients are chosen highest / lowest risk in turn; the
RNA is scaled with the checkpoint's scaler, never refit; the CLI writes the same."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib import colormaps
from PIL import Image
from test_training_data import SIZE0, D, grid, rna_adata, write_store
from typer.testing import CliRunner

import duopath
from duopath.checkpoints import load_model, save_checkpoint
from duopath.layout import FOLD_FILES
from duopath.models import build_model
from duopath.report.fold_heatmaps import _teacher_genes, choose_patients, write_fold_heatmaps
from duopath.report.heatmaps import read_thumbnail

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SLIDE = Path(duopath.__file__).parent / "data" / "slides" / "CMU-1-Small-Region.svs"
MAGS = ["10x", "20x"]
N_T, N_E = 3, 2
DIM, HEADS = 16, 2
THUMB_MPP = 8.0
PLANT_T, PLANT_E, LOW = 5, 30, 17  # 20x rows of P0's slide: top T tile, top E tile, a low tile


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """4 test patients; P1 has a second slide whose file is missing, P2 only a missing file,
    P3 no RNA and two slides. Features: column 0 = 1 on P0's T tile and on the same tile of P3's
    SECOND slide, column 1 = 1 on P0's E tile; 0 everywhere else."""
    root = tmp_path_factory.mktemp("heat")
    feats = root / "features"
    feats.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    patients = {"P0": ["P0-a"], "P1": ["P1-a", "P1-b"], "P2": ["P2-a"], "P3": ["P3-a", "P3-b"]}
    for pid, slides in patients.items():
        for sid in slides:
            t10 = grid(3, 3, origin=(448, 448))
            f10 = rng.normal(size=(len(t10), D))
            f20 = rng.normal(size=(4 * len(t10), D))
            f10[:, :2] = f20[:, :2] = 0.0
            if sid == "P0-a":
                f20[PLANT_T, 0] = f20[PLANT_E, 1] = 1.0
            if sid == "P3-b":
                f20[PLANT_T, 0] = 1.0
            write_store(feats / f"{sid}.zarr", t10, f10, f20)
            path = root / f"{sid}.svs" if sid in ("P1-b", "P2-a") else SLIDE  # those two do not exist
            rows.append({"patient_id": pid, "slide_id": sid, "slide_path": str(path)})
    sheet = root / "samples.csv"
    pd.DataFrame(rows).to_csv(sheet, index=False)
    pred = pd.DataFrame({"patient_id": ["P0", "P1", "P2", "P3"], "fold": 0, "risk": [3.0, -1.0, 1.0, 0.5],
                         "time": 1.0, "event": 1, "label": "x"})
    pred_path = root / "predictions.parquet"
    pred.to_parquet(pred_path)
    x = rng.normal(size=(3, N_T + N_E)) * 2 + 5
    rna = root / "rna.h5ad"
    rna_adata(["P0", "P1", "P2"], x, N_T, without=["P3"]).write_h5ad(rna)
    return {"root": root, "features": feats, "sheet": sheet, "pred": pred_path, "rna": rna, "x": x}


def planted_teacher(path: Path) -> Path:
    """Cross attention whose T logits read feature 0 and E logits feature 1 (through the tile
    projection, a layer norm and identity keys); every other tile scores 0."""
    kwargs = {"feature_dim": D, "n_genes_T": N_T, "n_genes_E": N_E, "n_classes": 4, "task": "survival",
              "magnifications": MAGS, "dim": DIM, "n_heads": HEADS, "n_gene_tokens": 2, "gene_hidden": 8,
              "attention": "cross", "dropout": 0.0}
    torch.manual_seed(0)
    model = build_model("teacher", kwargs)
    hd = DIM // HEADS
    with torch.no_grad():
        for m in MAGS:
            w = model.tile_proj[m][0]
            w.weight.zero_()
            w.bias.zero_()
            for h in range(HEADS):
                w.weight[h * hd, 0] = 5.0  # feature 0 -> first dim of each head (T)
                w.weight[h * hd + 1, 1] = 5.0  # feature 1 -> second dim of each head (E)
            for s, j in (("T", 0), ("E", 1)):
                mha = model.fusion[m][s].read.mha
                mha.q_proj.weight.zero_()
                mha.q_proj.bias.zero_()
                mha.q_proj.bias[[h * hd + j for h in range(HEADS)]] = 20.0
                mha.k_proj.weight.copy_(torch.eye(DIM))
                mha.k_proj.bias.zero_()
    genes = [f"G{i}" for i in range(N_T + N_E)]
    save_checkpoint(path, "teacher", model, {
                "model_name": "teacher", "variant": "teacher", "model_kwargs": kwargs, "task": "survival",
                "time_bins": [0.0, 1.0, 2.0, 3.0, np.inf],
                "class_names": None, "genes_T": genes[:N_T], "genes_E": genes[N_T:],
                "scaler_mean": [1.0, 2.0, 3.0, 4.0, 5.0], "scaler_std": [2.0, 2.0, 2.0, 4.0, 4.0],
                "missing_rna": "mean", "feature_dim": D, "encoder": "synthetic", "weights_id": "synthetic:v1",
                "magnifications": MAGS, "fold": 0})
    return path


def tiny_student(path: Path) -> Path:
    kwargs = {"feature_dim": D, "n_classes": 4, "task": "survival", "magnifications": MAGS, "dim": 8,
              "n_heads": 2, "n_prototypes": 2, "dropout": 0.0}
    torch.manual_seed(0)
    model = build_model("student", kwargs).eval()
    save_checkpoint(path, "student", model, {
        "model_name": "student", "model_kwargs": kwargs, "variant": "student", "task": "survival",
        "time_bins": [0.0, 1.0, 2.0, 3.0, np.inf], "class_names": None, "risk_threshold": 0.0,
        "encoder": "synthetic", "weights_id": "synthetic:v1", "magnifications": MAGS, "tiling": {},
        "settings": {}, "teacher": None, "fold": 0, "seed": 0, "best_epoch": 0})
    return path


def run(cohort: dict, ckpt: Path, out: Path, **kw: object) -> dict:
    kw.setdefault("clip_to_tissue", False)  # the synthetic tiles lie partly on the CMU slide's glass
    return write_fold_heatmaps(ckpt, cohort["pred"], cohort["sheet"], cohort["features"], out,
                               rna=cohort["rna"], thumb_mpp=THUMB_MPP, **kw)


def panel(out: Path, index: dict, file: str, name: str) -> np.ndarray:
    """The slide picture of panel ``name`` cut out of figure ``file`` (its box from the index)."""
    entry = next(i for i in index["images"] if i["file"] == file)
    left, top, w, h = entry["panel_boxes"][name]
    return np.asarray(Image.open(out / file).convert("RGB"))[top : top + h, left : left + w]


def pixel(img: np.ndarray, xy0: np.ndarray, size0: float, scale: float) -> np.ndarray:
    cx, cy = ((xy0 + size0 / 2) * scale).astype(int)
    return img[cy, cx].astype(float)


def test_teacher_maps_planted_tiles_index_and_missing_slides(cohort: dict, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    ckpt = planted_teacher(tmp_path / FOLD_FILES["checkpoint"])
    out = tmp_path / "heatmaps"
    with caplog.at_level(logging.WARNING):
        index = run(cohort, ckpt, out, n_patients=3)
    # highest risk P0, lowest P1, 2nd highest P2 has no slide file -> 2nd lowest P3 (no RNA: mean)
    assert [p["patient_id"] for p in index["patients"]] == ["P0", "P1", "P3"]
    assert [p["reason"] for p in index["patients"]] == ["highest risk #1", "lowest risk #1", "lowest risk #2"]
    assert "P1-b" in caplog.text and "P2-a" in caplog.text
    assert {s["slide_id"] for s in index["skipped"]} == {"P1-b", "P2-a"}
    files = sorted(p.name for p in out.glob("*.png"))
    assert files == sorted(f"{s}_20x.png" for s in ("P0_P0-a", "P1_P1-a", "P3_P3-a", "P3_P3-b"))
    saved = json.loads((out / "heatmaps.json").read_text())
    assert saved == index and sorted(i["file"] for i in saved["images"]) == files
    first = next(i for i in saved["images"] if i["patient_id"] == "P0")
    assert first["risk"] == 3.0 and first["maps"] == ["T", "E"] and first["magnification"] == "20x"
    # a figure: T and E side by side, each with a colour bar, a title with the why and the gate
    assert first["colorbars"] == ["T", "E"]
    assert "highest predicted risk #1" in first["title"] and "predicted risk 3" in first["title"]
    assert "gate weight of 20x" in first["title"]
    assert not list(tmp_path.glob(".heatmaps.tmp-*"))

    thumb, s_mpp, t_mpp = read_thumbnail(SLIDE, 0.5, THUMB_MPP)
    t_img, e_img = (panel(out, index, "P0_P0-a_20x.png", m) for m in ("T", "E"))
    assert t_img.shape == e_img.shape == thumb.shape
    xy = (grid(3, 3, origin=(448, 448))[:, None, :] + np.array([[0, 0], [0, 224], [224, 0], [224, 224]])
          ).reshape(-1, 2)
    scale = s_mpp / t_mpp

    def at(img: np.ndarray, row: int) -> np.ndarray:  # the colour at the centre of 20x tile `row`
        return pixel(img, xy[row], SIZE0["20x"], scale)

    def expected(row: int, rank: float) -> np.ndarray:  # alpha 0.6 over the thumbnail
        return 0.4 * at(thumb, row) + 0.6 * np.asarray(colormaps["viridis"](rank)[:3]) * 255

    # T: its planted tile top, E's planted tile (negative T logit) bottom, the 34 others tie mid-rank
    for img, hot, cold in ((t_img, PLANT_T, PLANT_E), (e_img, PLANT_E, PLANT_T)):
        for row, rank in ((hot, 1.0), (cold, 0.0), (LOW, 0.5)):
            np.testing.assert_allclose(at(img, row), expected(row, rank), atol=1.5)
        assert np.abs(at(img, LOW) - expected(LOW, 1.0)).max() > 40
    # P3: ranks over the patient's bag, each slide painted with its own rows of it
    a, b = (panel(out, index, f"P3_P3-{k}_20x.png", "T") for k in "ab")
    np.testing.assert_allclose(at(b, PLANT_T), expected(PLANT_T, 1.0), atol=1.5)
    np.testing.assert_allclose(at(a, PLANT_T), expected(PLANT_T, 35 / 71), atol=1.5)


def test_rna_is_scaled_with_the_checkpoints_scaler(cohort: dict, tmp_path: Path) -> None:
    _, ckpt = load_model(planted_teacher(tmp_path / "c.safetensors"), ("teacher",))
    genes = _teacher_genes(ckpt, cohort["rna"], ["P1", "P3"])
    z = (cohort["x"][1] - np.array(ckpt["scaler_mean"])) / np.array(ckpt["scaler_std"])
    np.testing.assert_allclose(np.concatenate(genes["P1"]), z, rtol=1e-5)
    np.testing.assert_array_equal(np.concatenate(genes["P3"]), 0.0)  # training mean in z-scores


def test_student_branch_all_magnifications_and_cli(cohort: dict, tmp_path: Path) -> None:
    ckpt = tiny_student(tmp_path / FOLD_FILES["checkpoint"])
    index = run(cohort, ckpt, tmp_path / "h", n_patients=1, magnifications="all")
    assert index["kind"] == "student" and [p["patient_id"] for p in index["patients"]] == ["P0"]
    assert sorted(p.name for p in (tmp_path / "h").glob("*.png")) == [f"P0_P0-a_{m}.png" for m in MAGS]
    fig = index["images"][-1]
    assert fig["maps"] == ["omega", "clusters"] and fig["colorbars"] == ["omega"]
    assert fig["legends"] == ["clusters"]
    thumb = read_thumbnail(SLIDE, 0.5, THUMB_MPP)[0]
    assert fig["slide_size"] == [thumb.shape[1], thumb.shape[0]]
    assert Image.open(tmp_path / "h" / fig["file"]).width > 2 * thumb.shape[1]  # side by side

    from duopath.cli import app

    out = tmp_path / "cli"
    res = CliRunner().invoke(app, ["heatmaps", "--checkpoint", str(ckpt), "--predictions",
                                   str(cohort["pred"]), "--sheet", str(cohort["sheet"]), "--features-dir",
                                   str(cohort["features"]), "--out", str(out), "--patients", "2",
                                   "--thumb-mpp", "8"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.glob("*.png")) == [f"{s}_20x.png" for s in ("P0_P0-a", "P1_P1-a")]
    bad = CliRunner().invoke(app, ["heatmaps", "--checkpoint", str(cohort["pred"]), "--predictions",
                                   str(cohort["pred"]), "--sheet", str(cohort["sheet"]), "--features-dir",
                                   str(cohort["features"]), "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 1


def test_patient_choice_is_deterministic() -> None:
    surv = pd.DataFrame({"patient_id": ["a", "b", "c", "d", "e"], "risk": [1.0, 5.0, np.nan, -2.0, 1.0]})
    assert [p for p, _ in choose_patients(surv, "survival")] == ["b", "d", "e", "a"]
    cls = pd.DataFrame({"patient_id": ["a", "b", "c", "d"], "pred_label": ["x", "y", "x", "x"],
                        "prob_x": [0.6, 0.1, 0.9, 0.7], "prob_y": [0.4, 0.9, 0.1, 0.3]})
    chosen = choose_patients(cls, "classification", ["x", "y"])
    assert chosen == [("c", "most confident x #1"), ("b", "most confident y #1"),
                      ("d", "most confident x #2"), ("a", "most confident x #3")]

