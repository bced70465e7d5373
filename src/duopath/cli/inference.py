"""``duopath predict SLIDE [SLIDE ...] --model DIR --out DIR``: a trained student applied to a new
patient's slide(s); ``duopath predict --sheet CSV``: to a whole cohort, one table out. Heavy
imports happen inside the function so ``duopath --help`` stays instant.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from duopath.cli.options import fail

log = logging.getLogger(__name__)


def predict(
    model: Annotated[Path, typer.Option("--model", help="results/{cohort}/{task}/student/fold{k} "
                                        "(or its checkpoint file)")],
    out: Annotated[Path, typer.Option("--out", help="output folder (prediction.json, heatmaps)")],
    slides: Annotated[Optional[list[Path]], typer.Argument(  # noqa: UP045
        help="whole-slide image(s) of ONE patient (any OpenSlide format); several are pooled")] = None,
    mpp: Annotated[Optional[float], typer.Option(  # noqa: UP045
        "--mpp", help="level-0 µm/px if the header lacks it")] = None,
    config: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--config", help="config.yaml whose segmentation/tiling/encoder sections to use (checked "
        "against the model); default: the model's own tiling and encoder")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu | auto | cuda | cuda:N")] = "cpu",
    sheet: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--sheet", help="batch: a CSV/TSV with slide_path (+ patient_id, mpp, time, event, label); every "
        "patient is predicted into OUT/patients/<patient>/ and listed in OUT/predictions.csv")] = None,
    slide_dir: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--slide-dir", help="relative slide_path values of --sheet resolve here")] = None,
) -> None:
    """Segment, tile, embed and predict a patient's slide(s) with a trained student; write JSON + heatmaps.

    With ``--sheet``: every patient of the sheet, one table out (a failed patient is listed with
    its error; the others are predicted)."""
    import json

    from duopath.checkpoints import CheckpointError
    from duopath.devices import GpuError, resolve_device
    from duopath.inference.predict import PredictError, PredictSettings, predict_slide
    from duopath.inference.summary import describe

    settings = PredictSettings()
    if config is not None:
        import yaml

        from duopath.config import EncoderConfig, SegmentationConfig, TilingConfig

        raw = yaml.safe_load(config.read_text()) or {}
        settings = PredictSettings(
            segmentation=SegmentationConfig.model_validate(raw.get("segmentation") or {}),
            tiling=TilingConfig.model_validate(raw["tiling"]) if raw.get("tiling") else None,
            encoder=EncoderConfig.model_validate(raw["encoder"]) if raw.get("encoder") else None,
        )
    if (sheet is None) == (not slides):
        raise typer.BadParameter("give the SLIDE(s) of one patient, or --sheet for a batch (not both)")
    if sheet is not None:
        from duopath.cohort import SampleSheetError
        from duopath.inference.batch import predict_sheet, read_prediction_sheet

        try:
            table = predict_sheet(read_prediction_sheet(sheet, slide_dir), model, out, settings=settings,
                                  device=str(resolve_device(device)))
        except (SampleSheetError, CheckpointError, GpuError) as err:
            fail(err)
        n_ok = int((table["status"] == "ok").sum())
        typer.echo(f"{n_ok} of {len(table)} patients predicted: {out / 'predictions.csv'}")
        return
    try:
        result = predict_slide(slides, model, out, mpp=mpp, settings=settings,
                               device=str(resolve_device(device)))
    except (PredictError, CheckpointError, GpuError) as err:
        fail(err)
    for line in describe(result):  # percentile, threshold, scale, out-of-distribution warnings
        typer.echo(line)
    typer.echo(json.dumps({k: result[k] for k in ("risk", "risk_percentile", "risk_group", "probabilities",
                                                    "predicted_class", "n_tiles") if k in result}))
