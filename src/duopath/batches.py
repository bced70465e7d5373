"""Which slides share one job of the WSI stages, and the ``duopath`` arguments of such a job.

Why batch: one job per slide pays, per slide, a Python start and the stage's imports (about
1-2 s on a CPU: pandas, scikit-image, OpenSlide; for ``embed`` also ``import torch``, the
encoder's weight load -- ≈ 1.2 GB for a ViT-L such as UNI -- and the first CUDA batch). For a
cohort of many small slides that fixed cost exceeds the work itself: segmenting and tiling a
demo slide takes ~0.3 s (bench/README.md, bench/results/embed_fixed_cost_*.json). Two settings
group the slides of a cohort into jobs:

- ``segmentation.slides_per_job: K > 1``: one ``duopath wsi-prep`` process segments AND tiles K
  slides, each slide's tiling right after its segmentation (rules/wsi_prep.smk);
- ``encoder.slides_per_job: K > 1``: one ``duopath embed`` process embeds K slides with the model
  loaded once (rules/embed.smk).

Every slide still gets its own outputs (mask, tile table, QC pictures, feature store), each
written atomically, and a bad slide is still a ``failed`` row that does not stop the others
(``on_slide_error: skip``). The per-slide rules stay, for one slide alone.

Why fixed chunks of the sample-sheet order: a batch's membership must be the same every time
the Snakefile is parsed (a SLURM job re-parses it on the node), so it may depend only on the
sheet, not on which outputs exist. Appending rows to a sheet changes only the last, partial
batch (its slides are redone with the new ones).

The trade-off: Snakemake runs a job for all its outputs, so a change to ONE slide (a replaced
file) redoes its whole batch -- for ``wsi-prep`` seconds of CPU, but the batch's rewritten tile
tables then make every store of those slides stale, so their embedding is redone too. To redo
one slide alone, restrict Snakemake to the per-slide rules:
``snakemake <its .zarr> --allowed-rules segment tile embed``.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence

PREP_OUTPUTS: tuple[str, ...] = ("mask", "meta", "qc", "tiles", "tiles_qc")
"""The files ``duopath wsi-prep`` writes per slide: its options (``--mask`` ...) and the named
outputs of the batched rule (mask PNG, mask JSON, mask QC picture, tile table, tile QC picture)."""


def slide_batches(slides: Sequence[str], per_job: int) -> list[list[str]]:
    """``slides`` in order, cut into consecutive chunks of ``per_job`` (the last may be shorter)."""
    if per_job < 1:
        raise ValueError(f"slides_per_job must be >= 1, got {per_job}")
    return [list(slides[i : i + per_job]) for i in range(0, len(slides), per_job)]


def _mpp_args(slides: Sequence[str], mpp: Callable[[str], float | None]) -> list[str]:
    """``--mpp`` once per slide (``auto`` where the sheet has no override) when some slide of the
    batch has an override; nothing otherwise (the single-slide rules' arguments)."""
    overrides = [mpp(s) for s in slides]
    if all(v is None for v in overrides):
        return []
    return [a for v in overrides for a in ("--mpp", "auto" if v is None else repr(float(v)))]


def embed_args(
    slides: Sequence[str],
    *,
    slide_path: Callable[[str], str],
    tiles: Callable[[str], str],
    store: Callable[[str], str],
    mpp: Callable[[str], float | None],
) -> str:
    """The per-slide arguments of one ``duopath embed`` call over ``slides`` (shell-quoted)."""
    parts: list[str] = [shlex.quote(slide_path(s)) for s in slides]
    for s in slides:
        parts += ["--tiles", shlex.quote(tiles(s)), "--slide-id", shlex.quote(s),
                  "--out", shlex.quote(store(s))]
    return " ".join(parts + _mpp_args(slides, mpp))


def wsi_prep_args(
    slides: Sequence[str],
    *,
    slide_path: Callable[[str], str],
    outputs: Callable[[str], Mapping[str, str]],
    mpp: Callable[[str], float | None],
) -> str:
    """The per-slide arguments of one ``duopath wsi-prep`` call over ``slides`` (shell-quoted).

    ``outputs(slide)`` maps every name of :data:`PREP_OUTPUTS` to that slide's file.
    """
    parts: list[str] = [shlex.quote(slide_path(s)) for s in slides]
    for s in slides:
        files = outputs(s)
        parts += ["--slide-id", shlex.quote(s)]
        for name in PREP_OUTPUTS:
            parts += [f"--{name.replace('_', '-')}", shlex.quote(files[name])]
    return " ".join(parts + _mpp_args(slides, mpp))
