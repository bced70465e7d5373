# Stage 6: the multi-modal teacher and its ablations, one job per (cohort, task, model) that trains
# every fold in one process (inputs read once); its outputs are still per fold (fold{k}/ folders).
# Models: `teacher` plus `teacher_<ablation>` for every name in `teacher.ablations` (no_cgc,
# no_igc, one_group, rna_mean, or a magnification such as 10x); the list is PLAN.teacher_models
# (validated at parse time). Every model reads the same split table, so all are compared on the
# same patients. Logic: duopath.training.
import re


rule teacher:
    input:
        features=INPUTS.cohort_slides(layout.FEATURES),
        rna=P(layout.RNA_H5AD),
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
        features_dir=INPUTS.features_dir,
        mags=",".join(PLAN.magnifications),
        seed=CFG.training.seed,
        folds=INPUTS.fold_args,
    wildcard_constraints:
        model="|".join(re.escape(m) for m in PLAN.teacher_models),
        task=TASK_PATTERN,
    log:
        P("logs/teacher/{cohort}/{task}/{model}.log"),
    benchmark:
        B("teacher", "{task}/{model}")
    threads: CFG.training.threads
    resources:
        # Features of the cohort are cached in memory up to teacher.feature_cache_gb.
        mem_mb=lambda wc, attempt: int(min(CFG.teacher.feature_cache_gb, 64) * 1000 + 4000) * attempt,
        runtime=240,
        gpu=gpu_resource(CFG.teacher.device),
    conda:
        "../envs/train.yaml"
    shell:
        "{DUOPATH} train " + TRAIN_ARGS + " --rna {input.rna:q} > {log:q} 2>&1"
