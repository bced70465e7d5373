"""``duopath predict SLIDE [SLIDE ...] --model DIR --out DIR``: a trained student applied to a new
patient's slide(s). Heavy imports happen inside the function so ``duopath --help`` stays instant.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from duopath.cli.options import fail

log = logging.getLogger(__name__)


def predict(
    slides: Annotated[list[Path], typer.Argument(
        help="whole-slide image(s) of ONE patient (any OpenSlide format); several are pooled")],
    model: Annotated[Path, typer.Option("--model", help="results/{cohort}/{task}/student/fold{k} "
                                        "(or its checkpoint file)")],
    out: Annotated[Path, typer.Option("--out", help="output folder (prediction.json, heatmaps)")],
    mpp: Annotated[Optional[float], typer.Option(  # noqa: UP045
        "--mpp", help="level-0 µm/px if the header lacks it")] = None,
    config: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--config", help="config.yaml whose segmentation/tiling/encoder sections to use (checked "
        "against the model); default: the model's own tiling and encoder")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu | auto | cuda | cuda:N")] = "cpu",
) -> None:
    """Segment, tile, embed and predict a patient's slide(s) with a trained student; write JSON + heatmaps."""
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
    try:
        result = predict_slide(slides, model, out, mpp=mpp, settings=settings,
                               device=str(resolve_device(device)))
    except (PredictError, CheckpointError, GpuError) as err:
        fail(err)
    for line in describe(result):  # percentile, threshold, scale, out-of-distribution warnings
        typer.echo(line)
    typer.echo(json.dumps({k: result[k] for k in ("risk", "risk_percentile", "risk_group", "probabilities",
                                                    "predicted_class", "n_tiles") if k in result}))


def external(
    checkpoint: Annotated[list[Path], typer.Option("--checkpoint", help="the source model's checkpoint "
                                                   "of one outer fold (repeat for every fold)")],
    sheet: Annotated[Path, typer.Option("--sheet", help="the external cohort's canonical sample sheet")],
    features_dir: Annotated[Path, typer.Option("--features-dir", help="its {slide}.zarr stores")],
    source_sheet: Annotated[Path, typer.Option("--source-sheet", help="the source cohort's sheet")],
    source_splits: Annotated[Path, typer.Option("--source-splits", help="the source's split table")],
    task: Annotated[str, typer.Option("--task", help="survival | classification")],
    out_dir: Annotated[Path, typer.Option("--out-dir", help="results/{cohort}/external/{task}/{model}")],
    device: Annotated[str, typer.Option("--device", help="cpu | auto | cuda | cuda:N")] = "cpu",
) -> None:
    """Score a source cohort's fold models (and their ensemble) on an external cohort's slides."""
    from duopath.devices import resolve_device
    from duopath.evaluation.external import external_predictions
    from duopath.io import plain_json, write_json, write_table

    try:
        predictions, metrics = external_predictions(
            checkpoint, sheet=sheet, features_dir=features_dir, source_sheet=source_sheet,
            source_splits=source_splits, task=task, device=str(resolve_device(device)))
    except ValueError as err:  # DataError, CheckpointError, SampleSheetError are ValueErrors
        fail(err)
    write_table(out_dir / "predictions.parquet", predictions)
    write_json(out_dir / "metrics.json", plain_json(metrics))
    log.info("external %s: %s", metrics["model"], {k: v.get("c_harrell", v.get("auc"))
                                                    for k, v in metrics["scores"].items()})


def external_report(
    metrics: Annotated[list[Path], typer.Option("--metrics", help="results/{cohort}/external/{task}/"
                                                "{model}/metrics.json (repeat)")],
    cohort: Annotated[str, typer.Option("--cohort", help="the external cohort")],
    source: Annotated[str, typer.Option("--source", help="the cohort the models were trained on")],
    table_out: Annotated[Path, typer.Option("--table-out", help="results/{cohort}/external.csv")],
    out: Annotated[Path, typer.Option("--out", help="results/{cohort}/report.html")],
) -> None:
    """The external-validation table and page of an external test cohort."""
    import json

    from duopath.evaluation.external import external_table
    from duopath.io import write_table, write_text
    from duopath.report.external import external_page

    runs = [json.loads(path.read_text()) for path in metrics]
    table = external_table(runs)
    write_table(table_out, table)
    write_text(out, external_page(cohort, source, table, runs))
