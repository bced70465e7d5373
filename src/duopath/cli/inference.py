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
