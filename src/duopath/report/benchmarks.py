"""The jobs' Snakemake benchmarks, summarised: wall time and peak memory per stage, slowest jobs.

Every rule that does real work writes a ``benchmark:`` TSV (``duopath.layout.BENCHMARK``:
``benchmarks/{cohort}/{stage}/{job}.tsv``). Why summarise them in the report: sizing SLURM
``mem_mb`` and ``runtime`` for a real cohort is guesswork without them, and a small pilot run
gives the per-stage numbers to scale from. Snakemake samples a job's memory every few seconds
(and once early), so the peak of a job much shorter than that can be missed: the table says so.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from duopath.report.html_parts import esc, table

log = logging.getLogger(__name__)

COLUMNS = ["stage", "job", "seconds", "max_rss_mb", "cpu_seconds"]
_SNAKEMAKE = {"s": "seconds", "max_rss": "max_rss_mb", "cpu_time": "cpu_seconds"}


def read_benchmarks(root: Path | str) -> pd.DataFrame:
    """One row per benchmark TSV below ``root`` (``{stage}/{job}.tsv``): :data:`COLUMNS`.

    A job re-run with ``--benchmark-repeats`` has several rows: its worst (longest, largest) is
    kept. Values Snakemake could not measure (``NA``, ``-``) become NaN. A missing folder is an
    empty table (a run without benchmarks), an unreadable TSV a warning naming it.
    """
    root = Path(root)
    rows = []
    for path in sorted(root.glob("*/**/*.tsv")) if root.is_dir() else []:
        try:
            raw = pd.read_csv(path, sep="\t")
        except (OSError, ValueError, pd.errors.ParserError) as err:
            log.warning("benchmark %s unreadable, left out: %s", path, err)
            continue
        missing = [c for c in _SNAKEMAKE if c not in raw.columns]
        if missing or raw.empty:
            log.warning("benchmark %s lacks columns %s or rows, left out", path, missing)
            continue
        values = raw[list(_SNAKEMAKE)].apply(pd.to_numeric, errors="coerce").max()
        rel = path.relative_to(root)
        rows.append({
            "stage": rel.parts[0],
            "job": str(Path(*rel.parts[1:]).with_suffix("")),
            **{_SNAKEMAKE[k]: float(v) for k, v in values.items()},
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def stage_summary(bench: pd.DataFrame) -> pd.DataFrame:
    """Per stage: jobs, total / median / max wall seconds, median / max peak RSS (MB)."""
    if bench.empty:
        return pd.DataFrame(columns=["stage", "jobs", "total_s", "median_s", "max_s",
                                     "median_rss_mb", "max_rss_mb"])
    g = bench.groupby("stage", sort=False)
    out = pd.DataFrame({
        "jobs": g.size(),
        "total_s": g["seconds"].sum(),
        "median_s": g["seconds"].median(),
        "max_s": g["seconds"].max(),
        "median_rss_mb": g["max_rss_mb"].median(),
        "max_rss_mb": g["max_rss_mb"].max(),
    }).reset_index()
    return out.sort_values("total_s", ascending=False, kind="stable").reset_index(drop=True)


def slowest_jobs(bench: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The ``n`` longest jobs, longest first."""
    return bench.sort_values("seconds", ascending=False, kind="stable").head(n).reset_index(drop=True)


def _num(value: float, digits: int = 1) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:,.{digits}f}"


def benchmarks_html(bench: pd.DataFrame, n_slowest: int = 10) -> str:
    """The report's resource section body: per-stage table, slowest jobs, how to read them."""
    if bench.empty:
        return '<p class="muted">No job benchmarks were found for this cohort.</p>'
    stages = stage_summary(bench)
    rows = [
        (esc(r.stage), str(int(r.jobs)), _num(r.total_s), _num(r.median_s), _num(r.max_s),
         _num(r.median_rss_mb, 0), _num(r.max_rss_mb, 0))
        for r in stages.itertuples()
    ]
    slow = [
        (esc(r.stage), esc(r.job), _num(r.seconds), _num(r.max_rss_mb, 0), _num(r.cpu_seconds))
        for r in slowest_jobs(bench, n_slowest).itertuples()
    ]
    return (
        f"<p>{len(bench)} jobs of this cohort (Snakemake <code>benchmark:</code> files, "
        f"<code>benchmarks/&lt;cohort&gt;/&lt;stage&gt;/</code>). Size a cluster run from the "
        "<i>max</i> columns with headroom (SLURM <code>mem_mb</code> from peak RSS, "
        "<code>runtime</code> from wall time, scaled by the number of tiles or patients of the "
        "real cohort). Memory is sampled while a job runs: the peak of a job of a few seconds "
        "can be under-reported.</p>"
        + table(["stage", "jobs", "total s", "median s", "max s", "median peak RSS MB",
                 "max peak RSS MB"], rows)
        + "<h3>Slowest jobs</h3>"
        + table(["stage", "job", "wall s", "peak RSS MB", "CPU s"], slow, left=2)
    )
