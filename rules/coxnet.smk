# Stage 6c: the penalised Cox baseline (`coxnet`, scikit-survival) on the SNN's genes, one job per
# (cohort, task) that fits every fold in one process (as the teacher's jobs; one `--fold k
# --out-dir DIR` pair alone re-runs a fold), on the same split table. It reads the RNA file only
# -- no slide -- so RNA-only cohorts run it too. Outputs: the fold files of every model
# (predictions, inner predictions, train_log.csv = the alpha path, metrics.json last) plus
# coxnet.json (coefficients, genes, alpha). Switch: `baselines.coxnet`; which cohorts run it:
# PLAN.coxnet_models. Logic: duopath.training.coxnet_fold, duopath.models.coxnet.


rule coxnet:
    input:
        rna=P(layout.RNA_H5AD),
        splits=P(layout.SPLITS),
        sheet=P(layout.SHEET),
    output:
        model=PLAN.each_fold(layout.RESULTS_DIR + "/coxnet.json"),
        train_log=PLAN.each_fold(layout.TRAIN_LOG),
        inner=PLAN.each_fold(layout.INNER_PREDICTIONS),
        predictions=PLAN.each_fold(layout.PREDICTIONS),
        metrics=PLAN.each_fold(layout.METRICS),
    params:
        settings=settings(CFG.teacher),
        seed=CFG.training.seed,
        folds=INPUTS.fold_args,
    wildcard_constraints:
        model="coxnet",
        task="survival",
    log:
        P("logs/coxnet/{cohort}/{task}/{model}.log"),
    benchmark:
        B("coxnet", "{task}/{model}")
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=60,
    conda:
        "../envs/train.yaml"
    shell:
        "{DUOPATH} coxnet --sheet {input.sheet:q} --splits {input.splits:q} --rna {input.rna:q} "
        "{params.folds} --task {wildcards.task} --seed {params.seed} "
        "--settings {params.settings} --cohort {wildcards.cohort} > {log:q} 2>&1"
