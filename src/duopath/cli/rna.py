"""``duopath rna``: read RNA-seq, join it to the patients, normalise, build the T/E gene groups.

scanpy/anndata are imported only when the command runs, so ``duopath --help`` stays fast.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from duopath.cli.options import fail

log = logging.getLogger(__name__)


def rna(
    source: Annotated[Path, typer.Option(
        "--source", help="RNA input: GDC STAR folder (with gdc_sample_sheet*.tsv), its sample "
        "sheet, a CSV/TSV/parquet matrix, or an .h5ad")],
    sheet: Annotated[Path, typer.Option(
        "--sheet", help="canonical sample sheet CSV (cohorts/{cohort}/samples.csv)")],
    out: Annotated[Path, typer.Option("--out", help="output .h5ad")],
    settings: Annotated[str, typer.Option(
        "--settings", help="the `rna:` config section as JSON (empty = defaults)")] = "",
    qc: Annotated[Path | None, typer.Option("--qc", help="QC figure (.png)")] = None,
    summary: Annotated[Path | None, typer.Option("--summary", help="text summary (.txt)")] = None,
) -> None:
    """Read RNA-seq, join it to the patients, normalise, build T/E gene groups and scores."""
    from duopath.cohort import SampleSheetError
    from duopath.rna import RnaError
    from duopath.rna.build import build_rna, settings_from_json

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = settings_from_json(settings)
        build_rna(source, sheet, cfg, out, qc=qc, summary=summary)
    except (RnaError, SampleSheetError) as err:
        typer.echo(f"error: {err}", err=True)  # also on stderr when logging is not configured
        fail(err)
