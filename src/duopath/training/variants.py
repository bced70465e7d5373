"""Teacher model names and their settings (the full model and its ablations).

Kept apart from the trainer on purpose: the Snakefile needs the model list at parse time, and
importing the trainer would import torch (~3 s) into every ``snakemake -n`` and SLURM job.
"""

from __future__ import annotations

from collections.abc import Sequence

from duopath.config import TEACHER_ABLATIONS, TeacherConfig

__all__ = ["BASE_MODEL", "model_names", "variant_config"]

BASE_MODEL = "teacher"


# --------------------------------------------------------------------------- variants


def model_names(cfg: TeacherConfig) -> list[str]:
    """``teacher`` and one ``teacher_<ablation>`` per configured ablation."""
    return [BASE_MODEL] + [f"{BASE_MODEL}_{a}" for a in cfg.ablations]


def variant_config(cfg: TeacherConfig, model: str, magnifications: Sequence[str]) -> TeacherConfig:
    """The teacher settings of model ``model`` (``teacher`` or ``teacher_<ablation>``).

    ``magnifications``: every magnification of the tiling, coarse to fine (the single-
    magnification ablation must name one of them; the full teacher uses ``cfg.magnifications``
    or all of them).

    Raises:
        ValueError: unknown model name / ablation, or a magnification the tiling lacks.
    """
    mags = list(cfg.magnifications or magnifications)
    unknown = [m for m in mags if m not in magnifications]
    if unknown:
        raise ValueError(f"teacher.magnifications {unknown} are not tiled "
                         f"(tiling has {list(magnifications)})")
    if model == BASE_MODEL:
        return cfg.model_copy(update={"magnifications": mags})
    prefix = BASE_MODEL + "_"
    if not model.startswith(prefix):
        raise ValueError(f"model {model!r} is not the teacher or one of its ablations")
    name = model[len(prefix):]
    updates: dict[str, object] = {"magnifications": mags}
    if name == "no_cgc":
        updates["cgc"] = False
    elif name == "no_igc":
        updates["igc"] = "none"
    elif name == "one_group":
        updates["disentangle"] = False
    elif name == "rna_mean":
        updates["rna_mean"] = True
    elif name in magnifications:
        updates["magnifications"] = [name]
    else:
        raise ValueError(
            f"unknown teacher ablation {name!r}: use one of {list(TEACHER_ABLATIONS)} or a "
            f"magnification of the tiling {list(magnifications)}"
        )
    return cfg.model_copy(update=updates)
