"""Which slides share one embedding process, and the ``duopath embed`` arguments of such a job.

Why batch: one job per slide pays, per slide, a Python start, ``import torch``, the encoder's
weight load (≈ 1.2 GB for a ViT-L such as UNI, several GB for ViT-H/g) and the first CUDA batch.
For a cohort of many small slides that fixed cost can exceed the embedding itself
(bench/results/embed_fixed_cost_*.json). With ``encoder.slides_per_job: K > 1`` the Snakemake
rules embed K slides per process (rules/embed.smk, ``embed_batch_<cohort>_<i>``); each slide
still gets its own atomic store, and the per-slide ``embed`` rule stays for one slide alone.

Why fixed chunks of the sample-sheet order: a batch's membership must be the same every time
the Snakefile is parsed (a SLURM job re-parses it on the node), so it may depend only on the
sheet, not on which stores exist. Appending rows to a sheet changes only the last, partial
batch (its slides are re-embedded with the new ones).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence


def slide_batches(slides: Sequence[str], per_job: int) -> list[list[str]]:
    """``slides`` in order, cut into consecutive chunks of ``per_job`` (the last may be shorter)."""
    if per_job < 1:
        raise ValueError(f"slides_per_job must be >= 1, got {per_job}")
    return [list(slides[i : i + per_job]) for i in range(0, len(slides), per_job)]


def embed_args(
    slides: Sequence[str],
    *,
    slide_path: Callable[[str], str],
    tiles: Callable[[str], str],
    store: Callable[[str], str],
    mpp: Callable[[str], float | None],
) -> str:
    """The per-slide arguments of one ``duopath embed`` call over ``slides`` (shell-quoted).

    ``--mpp`` is given once per slide (``auto`` where the sheet has no override) only when some
    slide of the batch has an override, matching the single-slide rule's arguments otherwise.
    """
    parts: list[str] = [shlex.quote(slide_path(s)) for s in slides]
    for s in slides:
        parts += ["--tiles", shlex.quote(tiles(s)), "--slide-id", shlex.quote(s),
                  "--out", shlex.quote(store(s))]
    overrides = [mpp(s) for s in slides]
    if any(v is not None for v in overrides):
        parts += [a for v in overrides for a in ("--mpp", "auto" if v is None else repr(float(v)))]
    return " ".join(parts)
