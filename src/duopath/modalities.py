"""Which data each model reads, and which patients of a cohort can give it.

Why one place: a real cohort is mixed -- some patients have a slide and RNA, some a slide only,
some RNA only. The DAG (which jobs exist, which files a job reads), the trainer (which patients
a fold's model keeps) and the report (how many patients each model used, why the others were
left out, which comparisons are paired) must all answer "what does this model need?" the same
way. Torch-free and cheap: the Snakefile imports it at parse time.

Folds are made once over ALL patients of the cohort (``duopath.training.splits``); each model
then keeps the patients of each role that carry its modalities, so two models with the same
needs are scored on the same test patients (a paired comparison), and two with different needs
are compared on the patients they share.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from duopath.config import BASELINE_MODELS

SLIDE = "slide"
RNA = "rna"

#: Models outside the teacher/baseline/student families that read RNA only.
RNA_ONLY_MODELS = ("coxnet",)

#: Models defined for some tasks only (CoxNet is a Cox model); every other model runs every task
#: of its cohort. The DAG asks for no fold of a model outside its tasks, and the evaluation
#: scores each task with the models that have it.
MODEL_TASKS: dict[str, tuple[str, ...]] = {"coxnet": ("survival",)}

USAGE_COLUMNS = ["model", "needs", "n_used", "n_left_out", "left_out", "paired_with_main"]

_BASELINE_NEEDS = {"wsi": frozenset({SLIDE}), "rna": frozenset({RNA}), "both": frozenset({SLIDE, RNA})}


def model_inputs(model: str, *, missing_rna: str = "exclude") -> frozenset[str]:
    """The modalities a trained model name reads: ``{"slide"}``, ``{"rna"}`` or both.

    Teacher and its ablations read both; under ``teacher.missing_rna: mean`` a patient without
    RNA gets the training mean, so only the slide is required. The students read slides only
    (their teacher's targets are computed where it has RNA). ``coxnet`` and ``snn`` read RNA.
    """
    if model in BASELINE_MODELS:
        return _BASELINE_NEEDS[BASELINE_MODELS[model]]
    if model in RNA_ONLY_MODELS:
        return frozenset({RNA})
    if model.startswith("student"):
        return frozenset({SLIDE})
    if model == "teacher" or model.startswith("teacher_"):
        return frozenset({SLIDE}) if missing_rna == "mean" else frozenset({SLIDE, RNA})
    raise ValueError(f"unknown model {model!r}: not the teacher, a student, a baseline "
                     f"{list(BASELINE_MODELS)} or one of {list(RNA_ONLY_MODELS)}")


def model_has_task(model: str, task: str) -> bool:
    """Whether ``model`` is trained and scored on ``task`` (see :data:`MODEL_TASKS`)."""
    return task in MODEL_TASKS.get(model, (task,))


def patient_modalities(sheet: pd.DataFrame, *, has_rna_source: bool = True) -> pd.DataFrame:
    """One row per patient (index ``patient_id``, sorted): bool columns ``slide`` and ``rna``.

    ``sheet``: the canonical sample sheet (one row per slide, or per RNA-only patient). A
    patient has a slide when any of its rows names one. RNA follows the RNA join's rule
    (``duopath.rna.join``): when some row names an ``rna_sample_id``, a patient has RNA when any
    of its rows names one; when none does, samples are matched by patient ID, so every patient
    is taken to have RNA. ``has_rna_source`` False (no ``rna:`` configured): nobody has RNA.
    What is *declared* here may still fail later (a damaged slide, an RNA sample missing from
    the matrix); the trainer logs those patients under their own reason.
    """
    rna_ids = sheet["rna_sample_id"].fillna("").astype(str).str.strip() != ""
    if not has_rna_source:
        rna_ids[:] = False
    elif not rna_ids.any():
        rna_ids[:] = True
    df = pd.DataFrame({
        "patient_id": sheet["patient_id"].astype(str),
        SLIDE: sheet["slide_id"].fillna("").astype(str).str.strip() != "",
        RNA: rna_ids,
    })
    return df.groupby("patient_id", sort=True)[[SLIDE, RNA]].any()


def cohort_modalities(sheet: pd.DataFrame, *, has_rna_source: bool = True) -> frozenset[str]:
    """The modalities at least one patient of the cohort has."""
    mods = patient_modalities(sheet, has_rna_source=has_rna_source)
    return frozenset(m for m in (SLIDE, RNA) if bool(mods[m].any()))


def why_left_out(has: Iterable[str], needs: Iterable[str]) -> str | None:
    """The reason a patient with modalities ``has`` cannot be used by a model needing ``needs``."""
    missing = [m for m in (SLIDE, RNA) if m in set(needs) and m not in set(has)]
    if not missing:
        return None
    return "no " + " and no ".join("RNA" if m == RNA else m for m in missing)


def usable_patients(mods: pd.DataFrame, needs: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    """(patients carrying every modality in ``needs``, {left-out patient: reason})."""
    needs = frozenset(needs)
    keep, left = [], {}
    for pid, row in mods.iterrows():
        why = why_left_out([m for m in (SLIDE, RNA) if bool(row[m])], needs)
        if why is None:
            keep.append(str(pid))
        else:
            left[str(pid)] = why
    return keep, left


def model_usage(sheet: pd.DataFrame, models: Iterable[str], *, missing_rna: str = "exclude",
                has_rna_source: bool = True) -> pd.DataFrame:
    """Per model: what it reads, how many patients it can use, and how many are left out and why.

    Columns: model, needs, n_used, n_left_out, left_out (``"no RNA: 3; no slide: 2"``),
    paired_with_main: whether the model can use exactly the patients the FIRST (main) model
    uses, so their comparison is paired on every test patient; otherwise it is made on the
    patients both could use. The report shows this table beside the scores.
    """
    mods = patient_modalities(sheet, has_rna_source=has_rna_source)
    rows = []
    main: list[str] | None = None
    for model in models:
        needs = model_inputs(model, missing_rna=missing_rna)
        keep, left = usable_patients(mods, needs)
        main = keep if main is None else main
        counts = pd.Series(list(left.values()), dtype=str).value_counts().sort_index()
        rows.append({
            "model": model,
            "needs": " + ".join(m for m in (SLIDE, RNA) if m in needs),
            "n_used": len(keep),
            "n_left_out": len(left),
            "left_out": "; ".join(f"{why}: {n}" for why, n in counts.items()),
            "paired_with_main": keep == main,
        })
    return pd.DataFrame(rows, columns=USAGE_COLUMNS)
