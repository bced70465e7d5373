"""The embedded demo cohort: synthetic slides + RNA + clinical data with a planted truth.

``plan_demo(cfg)`` gives the sample sheet without touching any file (Snakemake calls it while
parsing the DAG, so it must stay cheap); ``write_demo(cfg, out_dir)`` renders the cohort.
Importing this package pulls in numpy and pandas only; the image stack (scipy, PIL, tifffile,
OpenSlide) is imported when ``write_demo`` runs.
"""

from __future__ import annotations

from pathlib import Path

from duopath.config import DemoConfig
from duopath.demo.truth import DEMO_SHEET_COLUMNS, plan_demo

__all__ = ["DEMO_SHEET_COLUMNS", "plan_demo", "write_demo"]


def write_demo(cfg: DemoConfig, out_dir: Path, workers: int = 1) -> None:
    """Write samples.csv, slides/, rna_counts.tsv, truth*.csv, truth_masks/ and README.md.

    See :mod:`duopath.demo.writer` for the layout; deterministic in ``cfg`` whatever
    ``workers`` (processes that render slides in parallel).
    """
    from duopath.demo.writer import write_demo as _write_demo

    _write_demo(cfg, Path(out_dir), workers=workers)
