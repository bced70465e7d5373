# Stage 6b: comparison baselines (abmil, transmil, snn, concat, bilinear, mcat), one job per
# (cohort, task, model, fold), trained by `duopath train` with the TEACHER's protocol (its optim,
# loss and data settings) on the same split table, so every row of the report is paired. The
# architecture comes from `baselines:`. A cohort without RNA runs the slide-only baselines, one
# without slides the SNN (PLAN.baselines; each job waits only for the inputs its model reads); the
# others are listed with the reason in the report. Logic: duopath.training (variants, trainer).
import os
import re

from duopath.config import BASELINE_MODELS


rule baseline:
    input:
        features=INPUTS.model_features,
        rna=INPUTS.model_rna,
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
        rna_arg=INPUTS.rna_arg,
        features_dir=INPUTS.features_dir,
        mags=",".join(PLAN.magnifications),
        seed=CFG.training.seed,
        out_dir=lambda wc, output: os.path.dirname(output.metrics),
    wildcard_constraints:
        model="|".join(re.escape(m) for m in BASELINE_MODELS),
        fold=r"\d+",
        task=TASK_PATTERN,
    log:
        P("logs/baseline/{cohort}/{task}/{model}/fold{fold}.log"),
    benchmark:
        B("baseline", "{task}/{model}/fold{fold}")
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: int(min(CFG.teacher.feature_cache_gb, 64) * 1000 + 4000) * attempt,
        runtime=240,
        gpu=lambda wc: 1 if CFG.teacher.device.startswith("cuda") else 0,
    conda:
        "../envs/train.yaml"
    shell:
        "{DUOPATH} train " + TRAIN_ARGS
        + " --baseline-settings {params.baseline_settings} {params.rna_arg} > {log:q} 2>&1"
