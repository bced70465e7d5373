# Stage 6: the multi-modal teacher and its ablations, one job per (cohort, model, fold).
# Models: `teacher` plus `teacher_<ablation>` for every name in `teacher.ablations` (no_cgc,
# no_igc, one_group, rna_mean, or a magnification such as 10x). Every model reads the same
# split table, so all are compared on the same patients. Logic: duopath.training.
import os
import re

from duopath.training.variants import model_names as _teacher_model_names
from duopath.training.variants import variant_config as _teacher_variant

TEACHER_MAGS = list(CFG.tiling.magnifications)
TEACHER_MODELS = _teacher_model_names(CFG.teacher)
for _m in TEACHER_MODELS:  # a bad ablation name fails at parse time, naming the key
    try:
        _teacher_variant(CFG.teacher, _m, TEACHER_MAGS)
    except ValueError as _err:
        raise ValueError(f"config.yaml, teacher.ablations: {_err}") from None


# `duopath train` arguments as the teacher and baseline rules pass them (one command, one protocol).
TRAIN_ARGS = (
    "--sheet {input.sheet:q} --splits {input.splits:q} "
    "--features-dir {params.features_dir:q} --fold {wildcards.fold} --model {wildcards.model} "
    "--task {wildcards.task} --magnifications {params.mags} --seed {params.seed} "
    "--settings {params.settings} --cohort {wildcards.cohort} --threads {threads} "
    "--no-progress --out-dir {params.out_dir:q}"
)


def teacher_targets(cohort):
    """metrics.json of every teacher model and fold of ``cohort`` (for `rule all`).

    A cohort without RNA (no `rna:` and not a demo) has no teacher: nothing is returned.
    """
    c = CFG.cohorts[cohort]
    if c.demo is None and c.rna is None:
        return []
    return [
        P(layout.METRICS, cohort=cohort, task=t, model=m, fold=str(k))
        for t in c.tasks
        for m in PLAN.allowed_models(cohort, TEACHER_MODELS)[0]
        for k in range(CFG.training.folds)
    ]


def teacher_features_dir(wildcards):
    """The folder of the cohort's {slide}.zarr stores (the stores themselves are inputs)."""
    return os.path.dirname(P(layout.FEATURES, cohort=wildcards.cohort, encoder=ENCODER, slide="_"))


rule teacher:
    input:
        features=cohort_slides(layout.FEATURES),
        rna=P(layout.RNA_H5AD),
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
        features_dir=teacher_features_dir,
        mags=",".join(TEACHER_MAGS),
        seed=CFG.training.seed,
        out_dir=lambda wc, output: os.path.dirname(output.metrics),
    wildcard_constraints:
        model="|".join(re.escape(m) for m in TEACHER_MODELS),
        fold=r"\d+",
        task="survival|classification",
    log:
        P("logs/teacher/{cohort}/{task}/{model}/fold{fold}.log"),
    threads: 2
    resources:
        # Features of the cohort are cached in memory up to teacher.feature_cache_gb.
        mem_mb=lambda wc, attempt: int(min(CFG.teacher.feature_cache_gb, 64) * 1000 + 4000) * attempt,
        runtime=240,
        gpu=lambda wc: 1 if CFG.teacher.device.startswith("cuda") else 0,
    conda:
        "../envs/train.yaml"
    shell:
        "duopath train " + TRAIN_ARGS + " --rna {input.rna:q} > {log:q} 2>&1"
