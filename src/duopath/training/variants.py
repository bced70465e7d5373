"""Trained model names and their settings: the teacher, its ablations and the baselines.

Kept apart from the trainer on purpose: the Snakefile needs the model list at parse time, and
importing the trainer would import torch (~3 s) into every ``snakemake -n`` and SLURM job.
"""

from __future__ import annotations

from collections.abc import Sequence

from duopath.config import (
    BASELINE_MODELS,
    STUDENT_ABLATIONS,
    TEACHER_ABLATIONS,
    BaselinesConfig,
    StudentConfig,
    TeacherConfig,
)

__all__ = ["BASE_MODEL", "STUDENT_MODELS", "STUDENT_VARIANTS", "baseline_names", "distils", "model_kind",
           "model_names", "registry_name", "student_model_names", "student_variant_config",
           "variant_config"]

BASE_MODEL = "teacher"
STUDENT_MODELS: tuple[str, ...] = ("student", "student_nokd")
"""The histology-only students every cohort with a teacher trains: distilled from the fold's
teacher (SKD), and without KD."""

STUDENT_VARIANTS: tuple[str, ...] = STUDENT_MODELS + tuple(f"student_{a}" for a in STUDENT_ABLATIONS)
"""Every student name, the opt-in ablations (``student.ablations``) included."""


def model_kind(model: str) -> str:
    """``teacher`` (the teacher and its ablations), ``baseline`` or ``student``: what a trained model
    name is, which decides its objective and its checkpoint kind (``duopath.checkpoints.KINDS``)."""
    if model in STUDENT_VARIANTS:
        return "student"
    if model in BASELINE_MODELS:
        return "baseline"
    return "teacher"


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
    if model in BASELINE_MODELS:
        # the teacher's protocol without its own losses: CGC and IGC act on T/E subspaces.
        # An RNA-only baseline never imputes RNA (a patient without it has no input at all).
        updates = {"magnifications": mags, "cgc": False, "igc": "none", "rna_mean": False}
        if BASELINE_MODELS[model] == "rna":
            updates["missing_rna"] = "exclude"
        return cfg.model_copy(update=updates)
    unknown = [m for m in mags if m not in magnifications]
    if unknown:
        raise ValueError(f"teacher.magnifications {unknown} are not tiled "
                         f"(tiling has {list(magnifications)})")
    if model == BASE_MODEL:
        return cfg.model_copy(update={"magnifications": mags})
    prefix = BASE_MODEL + "_"
    if not model.startswith(prefix):
        raise ValueError(f"model {model!r} is not the teacher, one of its ablations or a baseline "
                         f"{list(BASELINE_MODELS)}")
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


# --------------------------------------------------------------------------- students


def student_model_names(cfg: StudentConfig) -> list[str]:
    """``student``, ``student_nokd`` and one ``student_<ablation>`` per ``student.ablations``."""
    return list(STUDENT_MODELS) + [f"student_{a}" for a in cfg.ablations]


def distils(model: str) -> bool:
    """Whether a student is distilled from its fold's teacher (all but ``student_nokd``)."""
    return model in STUDENT_VARIANTS and model != "student_nokd"


def student_variant_config(cfg: StudentConfig, model: str) -> StudentConfig:
    """The student settings of ``model``: ``student_kdonly`` is the student trained on the
    patients its teacher can distil only (``slide_only_patients: exclude``) -- the ablation that
    shows what the task loss on slide-only patients adds. It is scored on the same validation and
    test patients as the others (``fold_data.prepare_fold``), so the comparison is paired."""
    if model not in STUDENT_VARIANTS:
        raise ValueError(f"unknown student {model!r}: one of {list(STUDENT_VARIANTS)}")
    if model == "student_kdonly":
        return cfg.model_copy(update={"slide_only_patients": "exclude"})
    return cfg


# --------------------------------------------------------------------------- baselines


def registry_name(model: str) -> str:
    """The ``duopath.models`` registry entry a trained model name is built from."""
    return model if model in BASELINE_MODELS else BASE_MODEL


def baseline_names(cfg: BaselinesConfig, *, has_rna: bool) -> tuple[list[str], dict[str, str]]:
    """The configured baselines a cohort's data allows, and why each other one is skipped.

    A cohort without RNA trains the slide-only baselines; the RNA ones are skipped with a reason
    the report shows (DESIGN.md "Baselines": the DAG picks what the data allows and says so).
    """
    run, skipped = [], {}
    for name in cfg.models:
        if BASELINE_MODELS[name] in ("rna", "both") and not has_rna:
            skipped[name] = "the cohort has no RNA"
        else:
            run.append(name)
    return run, skipped
