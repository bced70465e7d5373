"""Tile heatmaps of a few TEST patients of one fold, for the report (``layout.HEATMAPS_DIR``).

What a pathologist looks at first: where on the slide the model looked. One figure per patient,
slide and magnification (``{patient}_{slide}_{mag}.png``, ``report.heatmap_figure``): for the
teacher, the gene-token → tile attention of the T and E subspaces side by side (averaged over the
Q gene tokens and the heads); for the student, its token importance ω and its DPC-KNN prototype
clusters. Attention and ω are rank-scaled over the patient's whole bag
(``report.heatmaps.rank_scale``), so a patient's slides share one colour scale; every map uses
the tile→thumbnail mapping of ``heatmap_overlay`` and colours tissue only. The title states the
model, the magnification and its gate weight, the prediction and why the patient was chosen.

How it reproduces the fold's test predictions: the model is rebuilt from its checkpoint
(teacher or student, told apart by its ``kind``) and run on each chosen patient's FULL bag
(``BagStore``: all usable slides, every tile, as evaluation does). The teacher's genes are the
patient's RNA z-scored with the scaler STORED in the checkpoint (``rna.normalise.apply_scaler``,
never refit); under ``missing_rna: mean`` a patient without RNA gets the training mean, which in
z-scores is the zero vector (the scaler was fit on exactly the training patients with RNA).

Which patients (deterministic, from ``predictions.parquet``): survival — alternately the highest
and the lowest predicted risk (highest, lowest, 2nd highest, ...); classification — in turn the
most confident patient predicted as each class (class order of the checkpoint), then the 2nd most
confident of each, ...; ties by patient ID. A patient none of whose slide files exists is passed
over for the next one; a missing or unreadable slide file is skipped with a warning naming it.

Only the finest magnification is painted by default: the coarse map is the same tissue at a
quarter of the resolution, and would double the images the report shows.

Outputs, written as one directory atomically (a killed job leaves no partial directory): the PNGs
and ``heatmaps.json`` (patients chosen and why, their prediction and gate weights, one entry per
figure with its title, panels and sizes, skipped slides).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch

from duopath.io import atomic_path, write_image, write_json

log = logging.getLogger(__name__)

INDEX_FILE = "heatmaps.json"


class HeatmapError(ValueError):
    """Inputs that cannot make the fold's heatmaps (message names the file and why)."""


def choose_patients(pred: pd.DataFrame, task: str, class_names: Sequence[str] | None = None
                    ) -> list[tuple[str, str]]:
    """Every test patient in order of preference with the reason: (patient_id, reason); see module doc."""
    pred = pred.sort_values("patient_id", kind="stable")
    if task == "survival":
        ranked = pred[np.isfinite(pred["risk"].to_numpy(float))].sort_values("risk", kind="stable")
        low, high = list(ranked["patient_id"]), list(ranked["patient_id"])[::-1]
        out: list[tuple[str, str]] = []
        for k in range(len(ranked)):
            out += [(high[k], f"highest risk #{k + 1}"), (low[k], f"lowest risk #{k + 1}")]
    else:
        names = list(class_names or sorted(pred["pred_label"].astype(str).unique()))
        queues = []
        for c in names:
            own = pred[pred["pred_label"].astype(str) == c]
            own = own.sort_values(f"prob_{c}", ascending=False, kind="stable")
            queues.append([(p, f"most confident {c} #{k + 1}") for k, p in enumerate(own["patient_id"])])
        out = [q[k] for k in range(max(map(len, queues), default=0)) for q in queues if k < len(q)]
    seen: set[str] = set()
    return [(str(p), why) for p, why in out if not (p in seen or seen.add(p))]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name))


def _teacher_genes(ckpt: dict, rna: Path | str | None, patients: Sequence[str]) -> dict[str, tuple]:
    """(genes_T, genes_E) z-scores per patient with the checkpoint's own scaler (module docstring)."""
    import anndata as ad

    from duopath.rna.normalise import apply_scaler

    if rna is None or not Path(rna).exists():
        raise HeatmapError(f"the teacher needs the RNA file (rna/{{cohort}}.h5ad), got {rna}")
    adata = ad.read_h5ad(rna)
    gt, ge = list(ckpt["genes_T"]), list(ckpt["genes_E"])
    genes = pd.Index(gt + ge)
    missing = genes.difference(adata.var_names)
    if len(missing):
        raise HeatmapError(f"{rna}: genes of the teacher missing from the RNA file: {', '.join(missing[:5])}")
    mean = pd.Series(ckpt["scaler_mean"], index=genes)
    std = pd.Series(ckpt["scaler_std"], index=genes)
    have = [p for p in patients if p in set(adata.obs_names)]
    z = apply_scaler(adata, mean, std, patients=have) if have else np.zeros((0, len(genes)), np.float32)
    out = {p: (z[i, :len(gt)], z[i, len(gt):]) for i, p in enumerate(have)}
    for p in patients:
        if p not in out and ckpt.get("missing_rna") == "mean":
            out[p] = (np.zeros(len(gt), np.float32), np.zeros(len(ge), np.float32))
    return out


def _prediction_fields(row: pd.Series, task: str) -> dict:
    if task == "survival":
        return {"risk": float(row["risk"])}
    label = str(row["pred_label"])
    return {"pred_label": label, "probability": float(row.get(f"prob_{label}", np.nan))}


@torch.no_grad()
def _patient_maps(model: torch.nn.Module, kind: str, ckpt: dict, bag, genes: tuple | None,
                  paint: Sequence[str], device: str) -> tuple[dict[str, dict], dict[str, float]]:
    """The model on the patient's full bag → (per painted magnification, name → ``TileMap`` over the
    whole bag; the gate weight of every magnification)."""
    from duopath.report.heatmaps import attention_maps, student_maps
    from duopath.training.batch import Sample, collate

    mags = list(ckpt["magnifications"])
    empty = np.zeros(0, np.float32)
    gt, ge = genes if genes is not None else (empty, empty)
    batch = collate([Sample(bag.patient_id, gt, ge, 0, np.nan, np.nan)], [bag], mags).to(device)
    if kind == "teacher":
        out = model(batch.feats, batch.mask, batch.coords, batch.genes_T, batch.genes_E)
        # [Q, N] per subspace: the mean over the gene tokens (each row sums to 1 over the tiles)
        maps = {m: attention_maps({s: out.attention[m][s][0].float().mean(0).cpu().numpy()
                                   for s in ("T", "E")}) for m in paint}
    else:
        out = model(batch.feats, batch.mask, batch.coords)
        k = int(ckpt["model_kwargs"]["n_prototypes"])
        maps = {m: student_maps(out.tile_weights[m][0].float().cpu().numpy(),
                                out.clusters[m][0].cpu().numpy(), k) for m in paint}
    gates = {m: float(out.gate_weights[0, j]) for j, m in enumerate(mags)}
    return maps, gates


def prediction_text(info: Mapping, task: str) -> str:
    """'predicted risk 0.83' / 'predicted class X (p = 0.91)' for a figure title."""
    if task == "survival":
        return f"predicted risk {info['risk']:.3g} (higher = shorter predicted survival)"
    return f"predicted class {info['pred_label']} (p = {info['probability']:.2f})"


def reason_text(reason: str, task: str) -> str:
    """Why the patient was chosen, in words (``choose_patients`` reasons are terse)."""
    pool = "among this fold's test patients"
    if task == "survival":
        return f"chosen as the {reason.replace(' #', ' predicted risk #')} {pool}".replace(
            "highest risk predicted risk", "highest predicted risk").replace(
            "lowest risk predicted risk", "lowest predicted risk")
    return f"chosen as the {reason} {pool}"


def write_fold_heatmaps(
    checkpoint: Path | str,
    predictions: Path | str,
    sheet: Path | str,
    features_dir: Path | str,
    out_dir: Path | str,
    *,
    rna: Path | str | None = None,
    n_patients: int = 3,
    magnifications: Sequence[str] | Literal["all"] | None = None,
    thumb_mpp: float | None = None,
    device: str = "cpu",
    clip_to_tissue: bool = True,
) -> dict:
    """Paint the maps of up to ``n_patients`` test patients of one fold into ``out_dir``.

    ``magnifications``: the ones to paint (default: the finest of the checkpoint's; ``"all"``: every
    one). ``rna``: the
    cohort's h5ad, needed for a teacher only. ``clip_to_tissue``: colour only tissue pixels
    (``heatmaps.tissue_of``; False paints whole tiles). Returns the ``heatmaps.json`` index.
    """
    from duopath.checkpoints import CheckpointError, load_model
    from duopath.cohort import read_canonical_sheet
    from duopath.io import json_ready
    from duopath.report.heatmap_figure import gate_text, heatmap_figure
    from duopath.report.heatmaps import read_thumbnail, tissue_of
    from duopath.slides.reader import SlideError
    from duopath.training.data import BagStore, DataError, open_zarr_group

    try:
        model, ckpt = load_model(checkpoint, ("teacher", "student"), device)
    except CheckpointError as err:
        raise HeatmapError(str(err)) from None
    kind = ckpt["kind"]
    mags = list(ckpt["magnifications"])
    paint = mags if magnifications == "all" else list(magnifications or mags[-1:])
    unknown = [m for m in paint if m not in mags]
    if unknown:
        raise HeatmapError(f"{checkpoint}: the model has no magnification {unknown} (it has {mags})")
    task = ckpt["task"]

    pred = pd.read_parquet(predictions)
    pred["patient_id"] = pred["patient_id"].astype(str)
    folds = set(pred["fold"].astype(int)) if "fold" in pred.columns else set()
    if folds - {int(ckpt["fold"])}:
        raise HeatmapError(f"{predictions}: folds {sorted(folds)}, but the checkpoint is fold {ckpt['fold']}")
    sheet_df = read_canonical_sheet(sheet)
    sheet_df = sheet_df[sheet_df["slide_id"] != ""]  # RNA-only patients have no slide to paint
    slide_path = dict(zip(sheet_df["slide_id"], sheet_df["slide_path"], strict=True))
    by_patient = {p: list(g["slide_id"]) for p, g in sheet_df.groupby("patient_id", sort=True)}
    order = [(p, why) for p, why in choose_patients(pred, task, ckpt.get("class_names")) if p in by_patient]

    index: dict = {"model": ckpt.get("variant"), "kind": kind, "task": task, "fold": int(ckpt["fold"]),
                   "checkpoint": str(checkpoint), "magnifications": paint, "patients": [], "images": [],
                   "skipped": []}

    def skip(pid: str, sid: str, why: str) -> None:
        log.warning("heatmaps: slide %s (patient %s) skipped: %s", sid, pid, why)
        index["skipped"].append({"patient_id": pid, "slide_id": sid, "reason": why})

    chosen = []
    for pid, why in order:
        if len(chosen) >= n_patients:
            break
        present = [s for s in by_patient[pid] if Path(slide_path.get(s, "")).is_file()]
        if present:
            chosen.append((pid, why))
        else:
            for s in by_patient[pid]:
                skip(pid, s, f"slide file {slide_path.get(s) or '(none)'} does not exist")
    genes = _teacher_genes(ckpt, rna, [p for p, _ in chosen]) if kind == "teacher" else {}
    try:
        store = BagStore({p: by_patient[p] for p, _ in chosen}, features_dir, mags, cache_bytes=0) \
            if chosen else None
    except DataError as err:
        raise HeatmapError(str(err)) from err
    if store is not None and (store.encoder, store.weights_id) != (ckpt["encoder"], ckpt["weights_id"]):
        raise HeatmapError(f"features under {features_dir} are {store.encoder}/{store.weights_id}, the "
                           f"model was trained on {ckpt['encoder']}/{ckpt['weights_id']}")

    out_dir = Path(out_dir)
    with atomic_path(out_dir, is_dir=True) as tmp:
        tmp.mkdir(parents=True)
        for pid, why in chosen:
            if pid not in store.slides or (kind == "teacher" and pid not in genes):
                skip(pid, "*", "no usable feature store" if pid not in store.slides else "no RNA")
                continue
            bag = store.get(pid)
            row = pred.loc[pred["patient_id"] == pid].iloc[0]
            info = {"patient_id": pid, "reason": why, **_prediction_fields(row, task)}
            index["patients"].append({**info, "slides": list(bag.slides)})
            maps, gates = _patient_maps(model, kind, ckpt, bag, genes.get(pid), paint, device)
            info["gate_weights"] = gates
            for k, (sid, zarr_path) in enumerate(zip(bag.slides, store.slides[pid], strict=True)):
                root = open_zarr_group(zarr_path)
                try:
                    thumb, s_mpp, t_mpp = read_thumbnail(slide_path.get(sid, ""),
                                                         float(root.attrs["slide_mpp"]), thumb_mpp)
                except SlideError as err:
                    skip(pid, sid, str(err))
                    continue
                tissue = tissue_of(thumb, t_mpp) if clip_to_tissue else None
                for m in paint:
                    rows = np.flatnonzero(bag.mags[m].slide == k)
                    xy = np.asarray(root[m]["coords"][:], dtype=float)
                    if len(xy) != len(rows):
                        raise HeatmapError(f"{zarr_path}/{m}: {len(xy)} tiles in the store, "
                                           f"{len(rows)} in the bag")
                    sub = {name: tm.subset(rows) for name, tm in maps[m].items()}
                    size0 = float(root[m].attrs["size0"])
                    titles = [
                        f"{index['model']} ({kind}), fold {index['fold']}: patient {pid}, slide {sid}, "
                        f"{m} tiles ({float(root[m].attrs['size_um']):g} µm)",
                        f"{prediction_text(info, task)}; {reason_text(why, task)}",
                        gate_text(m, gates),
                    ]
                    n_bag = len(next(iter(maps[m].values())).values)  # ranks are over the whole bag
                    image, fig = heatmap_figure(thumb, xy, size0, sub, s_mpp, t_mpp, [t for t in titles if t],
                                                tissue=tissue, n_tiles_label=f"patient's {n_bag} {m} tiles",
                                                n_bag=n_bag)
                    file = f"{_safe(pid)}_{_safe(sid)}_{_safe(m)}.png"
                    write_image(tmp / file, image)
                    index["images"].append({**info, "slide_id": sid, "magnification": m,
                                            "maps": list(sub), "file": file, "thumb_mpp": t_mpp,
                                            "gate_weight": gates.get(m), "title": fig.title,
                                            "colorbars": fig.colorbars, "legends": fig.legends,
                                            "slide_size": list(fig.slide_size),
                                            "panel_boxes": fig.panel_boxes,
                                            "size": [int(image.width), int(image.height)]})
        index = json_ready(index)
        write_json(tmp / INDEX_FILE, index)
    log.info("%s fold %s: %d heatmaps of %d patients -> %s (%d slides skipped)", index["model"],
             index["fold"], len(index["images"]), len(index["patients"]), out_dir, len(index["skipped"]))
    return index
