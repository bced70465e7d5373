# Stage 6b: comparison baselines (abmil, transmil, snn, concat, bilinear, mcat), one job per
# (cohort, task, model, fold), trained by `duopath train` with the TEACHER's protocol (its optim,
# loss and data settings) on the same split table, so every row of the report is paired. The
# architecture comes from `baselines:`. A cohort without RNA runs the slide-only baselines; the
# others are listed with the reason in the report. Logic: duopath.training (variants, trainer).
# Needs teacher.smk (TRAIN_ARGS, teacher_features_dir, TEACHER_MAGS).
import os
import re

from duopath.config import BASELINE_MODELS
from duopath.modalities import RNA, SLIDE, model_inputs
from duopath.training.variants import baseline_names as _baseline_names


def cohort_baselines(cohort):
    """(baselines the cohort's data allows, {skipped baseline: why})."""
    run, skipped = _baseline_names(CFG.baselines, has_rna=PLAN.has_rna(cohort))
    run, no_patients = PLAN.allowed_models(cohort, run)
    return run, {**skipped, **no_patients}


def baseline_targets(cohort):
    """metrics.json of every baseline the data allows, for every task and fold of ``cohort``."""
    return [
        P(layout.METRICS, cohort=cohort, task=t, model=m, fold=str(k))
        for t in CFG.cohorts[cohort].tasks
        for m in cohort_baselines(cohort)[0]
        for k in range(CFG.training.folds)
    ]


def baseline_rna(wildcards):
    """The cohort's RNA file for a baseline that reads RNA (slide-only baselines run without)."""
    if RNA not in model_inputs(wildcards.model) or not PLAN.has_rna(wildcards.cohort):
        return []
    return [P(layout.RNA_H5AD, cohort=wildcards.cohort)]


def baseline_features(wildcards):
    """Every slide's feature store for a baseline that reads slides; none for the SNN (an
    RNA-only cohort has no slides, and in a mixed one the SNN must not wait for them)."""
    if SLIDE not in model_inputs(wildcards.model):
        return []
    return cohort_slides(layout.FEATURES)(wildcards)


rule baseline:
    input:
        features=baseline_features,
        rna=baseline_rna,
        splits=P(layout.SPLITS),
        sheet=P(layout.SHEET),
    output:
        checkpoint=P(layout.CHECKPOINT),
        train_log=P(layout.TRAIN_LOG),
        inner=P(layout.INNER_PREDICTIONS),
        predictions=P(layout.PREDICTIONS),
        metrics=P(layout.METRICS),
    params:
        settings=settings(CFG.teacher),
        baseline_settings=settings(CFG.baselines),
        rna_arg=lambda wc, input: f"--rna {shlex.quote(input.rna[0])}" if input.rna else "",
        features_dir=teacher_features_dir,
        mags=",".join(TEACHER_MAGS),
        seed=CFG.training.seed,
        out_dir=lambda wc, output: os.path.dirname(output.metrics),
    wildcard_constraints:
        model="|".join(re.escape(m) for m in BASELINE_MODELS),
        fold=r"\d+",
        task="survival|classification",
    log:
        P("logs/baseline/{cohort}/{task}/{model}/fold{fold}.log"),
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: int(min(CFG.teacher.feature_cache_gb, 64) * 1000 + 4000) * attempt,
        runtime=240,
        gpu=lambda wc: 1 if CFG.teacher.device.startswith("cuda") else 0,
    conda:
        "../envs/train.yaml"
    shell:
        "duopath train " + TRAIN_ARGS + " --baseline-settings {params.baseline_settings} {params.rna_arg} > {log:q} 2>&1"
