"""The ``duopath`` command line: the same steps the Snakemake rules call, one command each.

One module per stage group -- :mod:`~duopath.cli.cohort` (validate, demo, sheet, splits, config schema),
:mod:`~duopath.cli.slides` (segment, tile, wsi-prep, embed, wsi-summary, encoders), :mod:`~duopath.cli.rna`,
:mod:`~duopath.cli.training` (train, train-student, coxnet), :mod:`~duopath.cli.external` (external),
:mod:`~duopath.cli.inference` (predict), :mod:`~duopath.cli.report` (evaluate, heatmaps, report,
contact-sheet, external-report) -- and one set of shared options and one error helper
(:mod:`~duopath.cli.options`). Stage settings travel as the JSON of their pydantic config section
(``--settings``), so a rule passes exactly what was validated and a settings change re-runs the
rule. Heavy imports (torch, scanpy, tiatoolbox) happen inside the commands, so ``duopath --help``
is instant.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from duopath.cli import cohort, external, inference, report, rna, slides, training

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="duopath: WSI + RNA-seq disentangled multi-modal pipeline steps.")


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    _log_runtime()


def _log_runtime() -> None:
    """Which interpreter runs which duopath source: a job's log shows the env it really ran in."""
    import duopath

    logging.getLogger("duopath").info("python %s; duopath %s from %s", sys.executable,
                                      duopath.__version__, Path(duopath.__file__).parent)


COMMANDS = {
    "validate": cohort.validate,
    "demo": cohort.demo,
    "sheet": cohort.sheet,
    "segment": slides.segment,
    "tile": slides.tile,
    "wsi-prep": slides.wsi_prep,
    "embed": slides.embed,
    "splits": cohort.splits,
    "wsi-summary": slides.wsi_summary,
    "encoders": slides.encoders,
    "rna": rna.rna,
    "train": training.train,
    "train-student": training.train_student,
    "coxnet": training.coxnet,
    "predict": inference.predict,
    "external": external.external,
    "external-report": report.external_report,
    "evaluate": report.evaluate,
    "heatmaps": report.heatmaps,
    "report": report.report,
    "contact-sheet": report.contact_sheet,
}
"""Command name -> function (the names the rules and users call)."""

for _name, _command in COMMANDS.items():
    app.command(_name)(_command)

config_app = typer.Typer(no_args_is_help=True, help="The configuration: its JSON schema.")
config_app.command("schema")(cohort.config_schema)
app.add_typer(config_app, name="config")
