"""``duopath predict``: a patient's slide(s) → the student's prediction, heatmaps and a JSON.

A clinic has only the slide (or a few slides of one patient: they are pooled into one bag the
way training pooled a patient's slides, and predicted once). This runs the pipeline's own
stages on each — ``segment_slide`` → ``tile_slide`` → ``embed_slide`` (the functions the DAG
runs, not a re-implementation) — with the settings the model was trained on, read from the
student checkpoint, then the student.

Why it refuses rather than adapts: a student applied to features of another encoder (or the
same encoder with other weights), or to tiles of another physical size, outputs numbers that
look fine and mean nothing. So the checkpoint's encoder name + weights id and tile mpp/px per
magnification must match what the caller's settings produce, and a slide without an mpp in its
header needs ``--mpp`` (never a silent default).

How far to trust it: the prediction is placed among the risks the model gave its training
patients (percentile; the risk-group threshold is their median) and checked for being out of
distribution (risk outside the training range; mean tile embedding farther from the training
slides than any training slide), from the reference the checkpoint carries
(``inference.reference``). Both are printed, logged and written.

Outputs in ``out_dir``: ``prediction.json``; ``heatmap_{mag}.png``, a figure with the token
importance ω and the DPC-KNN prototype clusters side by side over the slide (with a ``_{slide}``
suffix per slide when several are given; ``report.heatmap_figure``); ``summary.html``, one
self-contained page with the prediction, its place among the training risks, any
out-of-distribution warning and the heatmaps (``inference.summary``); and the intermediate files
under ``work/`` (mask, QC pictures, tiles, feature store) for inspection.

Every way it can fail on the user's input (no such file, unreadable or damaged slide, no mpp,
no tissue, too small for a tile, an unloadable checkpoint) is a :class:`PredictError`: one line
saying what and what to do, and ``work/`` is built in a temporary folder renamed only when the
prediction is written, so a failed run leaves no half-made intermediates behind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import duopath
from duopath.config import EncoderConfig, SegmentationConfig, TilingConfig
from duopath.io import atomic_path, write_image, write_json
from duopath.layout import FOLD_FILES

log = logging.getLogger(__name__)


class PredictError(ValueError):
    """The slide or the settings cannot be used with this model (message says why and what to do)."""


@dataclass(frozen=True)
class PredictSettings:
    """The caller's stage settings (from config.yaml or the defaults)."""

    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    tiling: TilingConfig | None = None  # None: exactly the checkpoint's tiling
    encoder: EncoderConfig | None = None  # None: the checkpoint's encoder, default weights


def _checkpoint_path(model: Path) -> Path:
    path = model / FOLD_FILES["checkpoint"] if model.is_dir() else model
    if not path.exists():
        raise PredictError(f"no student checkpoint at {path} (pass --model results/{{cohort}}/{{task}}/"
                           f"student/fold{{k}} or its {FOLD_FILES['checkpoint']})")
    return path


def _load_model(ckpt_path: Path, device: str) -> tuple[torch.nn.Module, dict]:
    """The student and its checkpoint metadata; a file that is not one is a :class:`PredictError`.

    Loaded by :mod:`duopath.checkpoints` (safetensors + JSON, never a pickle), which refuses any
    other file, and a teacher or baseline checkpoint, in one line naming the file.
    """
    from duopath.checkpoints import CheckpointError, load_model

    try:
        return load_model(ckpt_path, ("student",), device)
    except (CheckpointError, OSError) as err:
        raise PredictError(f"cannot load a student model: "
                           f"{str(err).splitlines()[0] if str(err) else type(err).__name__} "
                           "(pass the checkpoint of a trained duopath student, "
                           "results/{cohort}/{task}/student/fold{k})") from None


def resolve_tiling(ckpt: dict, requested: TilingConfig | None) -> TilingConfig:
    """The tiling the model was trained with; a request that differs is refused."""
    tiling = ckpt["tiling"]
    mags = list(ckpt["magnifications"])
    trained = {m: float(tiling[m]["mpp"]) for m in mags}
    px = {int(tiling[m]["tile_px"]) for m in mags}
    if len(px) != 1:
        raise PredictError(f"checkpoint tiles have several pixel sizes {px}: not a duopath tiling")
    tile_px = px.pop()
    if requested is None:
        return TilingConfig(magnifications=trained, tile_px=tile_px)
    asked = {m: float(v) for m, v in requested.magnifications.items() if m in mags}
    if asked != trained or requested.tile_px != tile_px:
        raise PredictError(f"the model was trained on tiles {trained} µm/px × {tile_px} px, the given "
                           f"tiling is {dict(requested.magnifications)} µm/px × {requested.tile_px} px: "
                           "use the model's tiling (drop the tiling settings)")
    return requested.model_copy(update={"magnifications": trained})


def check_encoder(ckpt: dict, requested: EncoderConfig | None) -> EncoderConfig:
    """The encoder config to embed with; another encoder name is refused before any work."""
    if requested is None:
        return EncoderConfig(name=ckpt["encoder"])
    if requested.name != ckpt["encoder"]:
        raise PredictError(f"the model was trained on {ckpt['encoder']} features, the given encoder is "
                           f"{requested.name}: set encoder.name: {ckpt['encoder']}")
    return requested


def predict_slide(
    slide: Path | str | Sequence[Path | str],
    model: Path | str,
    out_dir: Path | str,
    *,
    mpp: float | None = None,
    settings: PredictSettings | None = None,
    device: str = "cpu",
) -> dict:
    """Run the whole chain on one patient's slide(s) and write the outputs (module docstring).

    Several slides of one patient are pooled into one bag exactly as training pooled them
    (``training.data.pool_slides``: side by side, one prediction), and each gets its own
    heatmap figures (``heatmap_{mag}_{slide}.png``; a single slide keeps ``heatmap_{mag}.png``).
    ``mpp`` (level-0 µm/px) applies to every slide. Returns the JSON.
    """
    from duopath.encoding.registry import load_encoder
    from duopath.inference.reference import out_of_distribution, risk_percentile
    from duopath.inference.summary import write_summary
    from duopath.io import json_ready
    from duopath.report.fold_heatmaps import prediction_text
    from duopath.report.heatmap_figure import gate_text, heatmap_figure
    from duopath.report.heatmaps import read_thumbnail, student_maps, tissue_of
    from duopath.slides.reader import MissingMppError, SlideError, open_slide
    from duopath.training.data import pool_slides
    from duopath.training.losses import hazards_from_logits, risk_from_hazards

    t0 = time.perf_counter()
    slides = [Path(slide)] if isinstance(slide, (str, Path)) else [Path(p) for p in slide]
    out_dir = Path(out_dir)
    if not slides:
        raise PredictError("no slide given")
    stems = [p.stem for p in slides]
    if len(set(stems)) != len(stems):
        raise PredictError(f"slides must have distinct file names (their outputs are named by them): {stems}")
    settings = settings or PredictSettings()
    ckpt_path = _checkpoint_path(Path(model))
    student, ckpt = _load_model(ckpt_path, device)
    tiling = resolve_tiling(ckpt, settings.tiling)
    enc_cfg = check_encoder(ckpt, settings.encoder).model_copy(update={"device": device})
    slide_mpps = []
    for path in slides:
        if not path.exists():
            raise PredictError(f"slide {path} does not exist")
        try:
            with open_slide(path, mpp) as s:
                slide_mpps.append(s.mpp)
        except MissingMppError as err:
            raise PredictError(f"{err} (here: pass --mpp with the level-0 µm/px)") from None
        except SlideError as err:
            raise PredictError(str(err)) from None
    encoder = load_encoder(enc_cfg.name, enc_cfg.weights, device=device)
    if encoder.weights_id != ckpt["weights_id"]:
        raise PredictError(f"the model was trained on {ckpt['encoder']} weights {ckpt['weights_id']}, "
                           f"the encoder here loads {encoder.weights_id}: use the same weights file")

    mags = list(ckpt["magnifications"])
    created_out = not out_dir.exists()
    try:
        # work/ appears only complete: a failure below leaves no half-made intermediates.
        with atomic_path(out_dir / "work", is_dir=True) as work:
            work.mkdir()
            per_slide = [_slide_features(path, work, mags, settings, tiling, enc_cfg, encoder, mpp)
                         for path in slides]
            bags = (per_slide[0].bags if len(per_slide) == 1
                    else pool_slides([f.bags for f in per_slide], mags))
            feats = {m: torch.as_tensor(np.asarray(bags[m].feats, np.float32))[None].to(device)
                     for m in mags}
            coords = {m: torch.as_tensor(bags[m].coords)[None].to(device) for m in mags}
            mask = {m: torch.ones(1, feats[m].shape[1], dtype=torch.bool, device=device) for m in mags}
            with torch.no_grad():
                out = student(feats, mask, coords)
            # the plain slide at ≥ 1,000 px (never the QC picture: it carries outlines and a legend)
            thumbs = [read_thumbnail(p, m_) for p, m_ in zip(slides, slide_mpps, strict=True)]
            coords_xy = [{m: (np.asarray(f.store[m]["coords"][:], dtype=float),
                              float(f.store[m].attrs["size0"])) for m in mags} for f in per_slide]
    except PredictError:
        if created_out and out_dir.exists() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    logits = out.logits.float().cpu()

    result: dict = {
        "slide": str(slides[0]), "slide_mpp": slide_mpps[0],
        "slides": [{"slide": str(p), "slide_mpp": m_, "n_tiles": {m: len(f.bags[m]) for m in mags}}
                   for p, m_, f in zip(slides, slide_mpps, per_slide, strict=True)],
        "mpp_source": "--mpp" if mpp is not None else "header",
        "model": str(ckpt_path), "variant": ckpt.get("variant"), "fold": ckpt.get("fold"),
        "task": ckpt["task"], "encoder": ckpt["encoder"], "weights_id": ckpt["weights_id"],
        "tiling": ckpt["tiling"], "n_tiles": {m: int(feats[m].shape[1]) for m in mags},
        "gate_weights": {m: float(out.gate_weights[0, j]) for j, m in enumerate(mags)},
        "versions": {"duopath": duopath.__version__, "model_trained_with": ckpt.get("duopath_version"),
                     "torch": torch.__version__},
    }
    reference = ckpt.get("reference")
    risk = None
    if ckpt["task"] == "survival":
        hazards = hazards_from_logits(logits)
        risk = float(risk_from_hazards(hazards)[0])
        thr = ckpt.get("risk_threshold")
        result.update(risk=risk, risk_threshold=thr,
                      risk_group=None if thr is None else ("high" if risk > thr else "low"),
                      risk_scale=("the model's relative risk score: higher means shorter predicted "
                                  "survival; it has no unit and is comparable only with this model's "
                                  "other predictions. High / low: above / at or below the threshold, the "
                                  "median risk of the training patients"),
                      time_bins=ckpt["time_bins"],
                      survival=torch.cumprod(1.0 - hazards, -1)[0].tolist())
        risks = (reference or {}).get("risks")
        result["risk_percentile"] = None if not risks else risk_percentile(risk, risks)
        result["n_training_patients"] = len(risks) if risks else None
    else:
        probs = torch.softmax(logits, -1)[0].tolist()
        names = ckpt["class_names"]
        result.update(probabilities=dict(zip(names, probs, strict=True)),
                      predicted_class=names[int(np.argmax(probs))])
    pooled_feats = {m: (np.asarray(bags[m].feats, np.float32), np.asarray(bags[m].slide)) for m in mags}
    result["out_of_distribution"] = out_of_distribution(risk, pooled_feats, reference)
    ood = result["out_of_distribution"]
    if ood["flag"]:
        for why in ood["reasons"]:
            log.warning("OUT OF DISTRIBUTION: %s", why)
    elif ood["flag"] is None:
        log.warning("%s", ood["reasons"][0])

    heatmaps = {}
    gates = result["gate_weights"]
    for k, (path, (thumb, s_mpp, t_mpp), tiles_xy) in enumerate(
            zip(slides, thumbs, coords_xy, strict=True)):
        tissue = tissue_of(thumb, t_mpp)
        suffix = "" if len(slides) == 1 else f"_{path.stem}"
        for m in mags:
            rows = np.flatnonzero(np.asarray(bags[m].slide) == k)  # this slide's tiles, store order
            xy, size0 = tiles_xy[m]
            if len(rows) != len(xy):
                raise PredictError(f"slide {path}: {len(rows)} pooled {m} tiles vs {len(xy)} in its store")
            maps = student_maps(out.tile_weights[m][0].float().cpu().numpy(),
                                out.clusters[m][0].cpu().numpy(),
                                int(ckpt["model_kwargs"]["n_prototypes"]))
            sub = {name: tm.subset(rows) for name, tm in maps.items()}
            pred_line = (prediction_text({"risk": risk}, "survival") if risk is not None
                         else prediction_text({"pred_label": result["predicted_class"],
                                               "probability": max(result["probabilities"].values())},
                                              "classification"))
            titles = [f"{ckpt.get('variant')} (fold {ckpt.get('fold')}): {path.name}, {m} tiles "
                      f"({float(ckpt['tiling'][m]['size_um']):g} µm)", pred_line, gate_text(m, gates)]
            image, _ = heatmap_figure(thumb, xy, size0, sub, s_mpp, t_mpp, [t for t in titles if t],
                                      tissue=tissue, n_tiles_label=f"patient's {len(bags[m])} {m} tiles",
                                      n_bag=len(bags[m]))
            out_path = out_dir / f"heatmap_{m}{suffix}.png"
            write_image(out_path, image)
            heatmaps[f"{m}{suffix}"] = out_path.name
    result["heatmaps"] = heatmaps
    result["seconds"] = time.perf_counter() - t0
    # JSON has no Infinity (the last time-bin edge): non-finite numbers become null.
    result = json_ready(result)
    write_json(out_dir / "prediction.json", result)
    write_summary(out_dir / "summary.html", result, out_dir)
    shown = {k: result[k] for k in ("risk", "risk_percentile", "risk_group", "predicted_class")
             if k in result}
    log.info("%s: %s in %.1f s", ", ".join(map(str, slides)), shown, result["seconds"])
    return result


@dataclass(frozen=True)
class _SlideFeatures:
    """One slide's intermediates under work/ and its bags."""

    store: object  # zarr.Group, opened read-only
    mask_json: Path
    qc: Path
    bags: dict


def _slide_features(path: Path, work: Path, mags: list[str], settings: PredictSettings,
                    tiling: TilingConfig, enc_cfg: EncoderConfig, encoder, mpp: float | None,
                    ) -> _SlideFeatures:
    """segment → tile → embed one slide under ``work``; a SlideError becomes a PredictError."""
    import zarr

    from duopath.encoding.extract import embed_slide
    from duopath.slides.reader import SlideError
    from duopath.slides.stages import segment_slide, tile_slide
    from duopath.training.data import read_slide

    sid = path.stem
    mask_png, mask_json, qc = work / f"{sid}.mask.png", work / f"{sid}.mask.json", work / f"{sid}.qc.jpg"
    tiles_path, store = work / f"{sid}.tiles.parquet", work / f"{sid}.zarr"
    try:
        segment_slide(path, sid, settings.segmentation, mask_png=mask_png, mask_json=mask_json,
                      qc_image=qc, mpp_override=mpp, on_error="fail")
        tiles = tile_slide(mask_png, mask_json, tiling, tiles_out=tiles_path)
        missing = [m for m in mags if not (tiles["magnification"] == m).any()]
        if missing:
            raise PredictError(f"slide {path}: no {missing} tile has enough tissue "
                               f"(tiling.min_tissue_fraction {tiling.min_tissue_fraction}): is the "
                               "slide very small or nearly blank?")
        embed_slide(path, tiles_path, store, enc_cfg, slide_id=sid, mpp_override=mpp,
                    encoder=encoder, on_error="fail")
    except SlideError as err:
        raise PredictError(str(err)) from None
    # The store lives in work/'s temporary folder until the prediction is done: read it now.
    return _SlideFeatures(store=zarr.open_group(str(store), mode="r"), mask_json=mask_json, qc=qc,
                          bags=read_slide(store, mags))
