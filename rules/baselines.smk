# Stage 6b: comparison baselines (abmil, transmil, snn, concat, bilinear, mcat), one job per
# (cohort, task, model) for all its folds, trained by `duopath train` with the TEACHER's protocol
# (its optim, loss and data settings) on the same split table, so every row of the report is
# paired. The architecture comes from `baselines:`. A cohort without RNA runs the slide-only
# baselines, one without slides the SNN (PLAN.baselines; each job waits only for the inputs its
# model reads); the others are listed with the reason in the report. Logic: duopath.training.
import re

from duopath.config import BASELINE_MODELS


rule baseline:
    input:
        features=INPUTS.model_features,
        rna=INPUTS.model_rna,
        splits=P(layout.SPLITS),
        sheet=P(layout.SHEET),
    output:
        checkpoint=PLAN.each_fold(layout.CHECKPOINT),
        train_log=PLAN.each_fold(layout.TRAIN_LOG),
        inner=PLAN.each_fold(layout.INNER_PREDICTIONS),
        predictions=PLAN.each_fold(layout.PREDICTIONS),
        metrics=PLAN.each_fold(layout.METRICS),
    params:
        settings=settings(CFG.teacher),
        baseline_settings=settings(CFG.baselines),
        rna_arg=INPUTS.rna_arg,
        features_dir=INPUTS.features_dir,
        mags=",".join(PLAN.magnifications),
        seed=CFG.training.seed,
        folds=INPUTS.fold_args,
    wildcard_constraints:
        model="|".join(re.escape(m) for m in BASELINE_MODELS),
        task=TASK_PATTERN,
    log:
        P("logs/baseline/{cohort}/{task}/{model}.log"),
    benchmark:
        B("baseline", "{task}/{model}")
    threads: CFG.training.threads
    resources:
        mem_mb=lambda wc, attempt: int(min(CFG.teacher.feature_cache_gb, 64) * 1000 + 4000) * attempt,
        runtime=240,
        gpu=gpu_resource(CFG.teacher.device),
    conda:
        "../envs/train.yaml"
    shell:
        "{DUOPATH} train " + TRAIN_ARGS
        + " --baseline-settings {params.baseline_settings} {params.rna_arg} > {log:q} 2>&1"
