# Stage 6c: the penalised Cox baseline (`coxnet`, scikit-survival) on the SNN's genes, one job per
# (cohort, fold) of a survival task, on the same split table. It reads the RNA file only -- no
# slide -- so RNA-only cohorts run it too. Outputs: the fold files of every model
# (predictions, inner predictions, train_log.csv = the alpha path, metrics.json last) plus
# coxnet.json (coefficients, genes, alpha). Switch: `baselines.coxnet`; which cohorts run it:
# PLAN.coxnet_models. Logic: duopath.training.coxnet_fold, duopath.models.coxnet.
import os


rule coxnet:
    input:
        rna=P(layout.RNA_H5AD),
        splits=P(layout.SPLITS),
        sheet=P(layout.SHEET),
    output:
        model=P(layout.RESULTS_DIR + "/coxnet.json"),
        train_log=P(layout.TRAIN_LOG),
        inner=P(layout.INNER_PREDICTIONS),
        predictions=P(layout.PREDICTIONS),
        metrics=P(layout.METRICS),
    params:
        settings=settings(CFG.teacher),
        seed=CFG.training.seed,
        out_dir=lambda wc, output: os.path.dirname(output.metrics),
    wildcard_constraints:
        model="coxnet",
        fold=r"\d+",
        task="survival",
    log:
        P("logs/coxnet/{cohort}/{task}/{model}/fold{fold}.log"),
    benchmark:
        B("coxnet", "{task}/{model}/fold{fold}")
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=60,
    conda:
        "../envs/train.yaml"
    shell:
        "{DUOPATH} coxnet --sheet {input.sheet:q} --splits {input.splits:q} --rna {input.rna:q} "
        "--fold {wildcards.fold} --task {wildcards.task} --seed {params.seed} "
        "--settings {params.settings} --cohort {wildcards.cohort} --out-dir {params.out_dir:q} "
        "> {log:q} 2>&1"
