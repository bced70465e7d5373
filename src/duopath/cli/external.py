"""``duopath external``: a source cohort's fold models (and their ensemble) scored on an external
cohort's slides (``duopath.evaluation.external``). Its own module: the command needs torch and the
training code, not the slide and encoder stack of ``duopath predict``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from duopath.cli.options import fail

log = logging.getLogger(__name__)


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
