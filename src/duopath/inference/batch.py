"""``duopath predict --sheet``: a whole cohort's slides through one trained student, one table out.

Each patient goes through :func:`duopath.inference.predict.predict_slide` (the same chain as a
single prediction: segment -> tile -> embed with the model's own tiling and encoder, the
patient's slides pooled into one bag), into ``out_dir/patients/<patient>/``. The rows are
collected in ``out_dir/predictions.csv`` (written atomically once every patient was tried).

Why a failed patient does not stop the batch: in a real cohort some slides are damaged, lack an
mpp or hold no tissue; the table says which (``status``, ``error``) and the rest are predicted,
as the DAG's ``on_slide_error: skip`` does. Outcome columns of the sheet (``time``, ``event``,
``label``) are copied through so the table can be scored directly.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from duopath.cohort import SampleSheetError, is_missing, parse_tcga_barcode, read_table

log = logging.getLogger(__name__)

OUTCOME_COLUMNS = ("time", "event", "label")


def read_prediction_sheet(path: Path | str, slide_dir: Path | str | None = None) -> pd.DataFrame:
    """Patients and their slides: columns patient_id, slide_path (absolute), mpp (float or NaN),
    plus any outcome columns. ``patient_id`` defaults to the TCGA patient of the slide, else the
    slide file's stem; relative paths resolve against ``slide_dir`` (default: the sheet's folder).
    """
    path = Path(path)
    raw = read_table(path)
    raw.columns = [str(c).strip() for c in raw.columns]
    if "slide_path" not in raw.columns:
        raise SampleSheetError(f"{path}: needs a `slide_path` column (found: {', '.join(raw.columns)})")
    base = Path(slide_dir) if slide_dir is not None else path.parent
    rows, problems = [], []
    for i, row in enumerate(raw.to_dict("records")):
        text = str(row["slide_path"]).strip()
        if not text:
            problems.append(f"{path}, line {i + 2}: empty slide_path")
            continue
        slide = Path(text) if Path(text).is_absolute() else base / text
        bc = parse_tcga_barcode(slide.name)
        pid = str(row.get("patient_id", "")).strip() or (bc.patient_id if bc else slide.stem)
        mpp_text = str(row.get("mpp", "")).strip()
        try:
            mpp = float(mpp_text) if mpp_text and not is_missing(mpp_text) else float("nan")
        except ValueError:
            problems.append(f"{path}, line {i + 2}, column mpp: {mpp_text!r} is not a number")
            continue
        out = {"patient_id": pid, "slide_path": str(slide), "mpp": mpp}
        out.update({c: str(row[c]).strip() for c in OUTCOME_COLUMNS if c in raw.columns})
        rows.append(out)
    if problems:
        raise SampleSheetError("invalid prediction sheet:\n  - " + "\n  - ".join(problems))
    return pd.DataFrame(rows)


def predict_sheet(sheet: pd.DataFrame, model: Path | str, out_dir: Path | str, *, settings=None,
                  device: str = "cpu") -> pd.DataFrame:
    """Predict every patient of ``sheet`` (:func:`read_prediction_sheet`); write and return the table."""
    from duopath.checkpoints import CheckpointError
    from duopath.inference.predict import PredictError, predict_slide
    from duopath.io import write_table

    out_dir = Path(out_dir)
    rows = []
    for pid, g in sheet.groupby("patient_id", sort=True):
        mpps = g["mpp"].dropna().unique()
        row: dict = {"patient_id": pid, "n_slides": len(g)}
        row.update({c: g[c].iloc[0] for c in OUTCOME_COLUMNS if c in g.columns})
        try:
            if len(mpps) > 1:
                raise PredictError(f"patient {pid}: its slides give different mpp values {list(mpps)}")
            res = predict_slide(list(g["slide_path"]), model, out_dir / "patients" / str(pid),
                                mpp=float(mpps[0]) if len(mpps) else None, settings=settings,
                                device=device)
        except (PredictError, CheckpointError) as err:
            log.warning("patient %s not predicted: %s", pid, err)
            rows.append({**row, "status": "failed", "error": str(err)})
            continue
        row.update({"status": "ok", "error": "", "risk": res.get("risk"),
                    "risk_percentile": res.get("risk_percentile"), "risk_group": res.get("risk_group"),
                    "predicted_class": res.get("predicted_class"),
                    "n_tiles": sum((res.get("n_tiles") or {}).values())})
        for c, p in (res.get("probabilities") or {}).items():
            row[f"prob_{c}"] = p
        rows.append(row)
    table = pd.DataFrame(rows)
    write_table(out_dir / "predictions.csv", table)
    n_ok = int((table["status"] == "ok").sum()) if len(table) else 0
    log.info("%d of %d patients predicted -> %s", n_ok, len(table), out_dir / "predictions.csv")
    return table
