"""``duopath predict SLIDE [SLIDE ...] --model DIR --out DIR``: a trained student applied to a new
patient's slide(s).

Registered in the main app by ``app.command("predict")(predict)`` (``duopath.cli``). Heavy
imports happen inside the function so ``duopath --help`` stays instant.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

log = logging.getLogger(__name__)


def predict(
    slides: Annotated[list[Path], typer.Argument(
        help="whole-slide image(s) of ONE patient (any OpenSlide format); several are pooled")],
    model: Annotated[Path, typer.Option("--model", help="results/{cohort}/{task}/student/fold{k} "
                                        "(or its checkpoint.pt)")],
    out: Annotated[Path, typer.Option("--out", help="output folder (prediction.json, heatmaps)")],
    mpp: Annotated[Optional[float], typer.Option(  # noqa: UP045
        "--mpp", help="level-0 µm/px if the header lacks it")] = None,
    config: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--config", help="config.yaml whose segmentation/tiling/encoder sections to use (checked "
        "against the model); default: the model's own tiling and encoder")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu | cuda | cuda:N")] = "cpu",
) -> None:
    """Segment, tile, embed and predict a patient's slide(s) with a trained student; write JSON + heatmaps."""
    import json

    from duopath.inference.predict import PredictError, PredictSettings, predict_slide

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
        result = predict_slide(slides, model, out, mpp=mpp, settings=settings, device=device)
    except PredictError as err:
        logging.getLogger("duopath").error("%s", err)
        raise typer.Exit(code=1) from err
    typer.echo(json.dumps({k: result[k] for k in ("risk", "risk_group", "probabilities", "predicted_class",
                                                    "n_tiles") if k in result}))
