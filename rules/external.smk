# Stage 10: external test cohorts (`external_of: <source>`). Their slides go through the same
# segment/tile/embed rules (same encoder and tiling); nothing is trained on them. Every slide-only
# model of the source (students, abmil/transmil) is applied as trained: each outer fold's model and
# their ensemble (mean risk / mean class probabilities), scored with the source's metrics.
#   external:        -> results/{cohort}/external/{task}/{model}/predictions.parquet + metrics.json
#   external_report: -> results/{cohort}/external.csv + results/{cohort}/report.html
# Logic: duopath.evaluation.external, duopath.report.external. Include after the training rules.


def external_models(cohort):
    """The source's trained models that read slides only (an external cohort has no RNA)."""
    source = PLAN.external_source(cohort)
    if source is None:
        return []
    trained = (list(STUDENT_MODELS) if student_targets(source) else []) + list(cohort_baselines(source)[0])
    return PLAN.external_models(cohort, trained)


def external_targets(cohort):
    """The external report of ``cohort`` when it is an external test cohort with models to score."""
    return [P(layout.REPORT, cohort=cohort)] if external_models(cohort) else []


def external_checkpoints(wildcards):
    source = PLAN.external_source(wildcards.cohort)
    return [P(layout.CHECKPOINT, cohort=source, task=wildcards.task, model=wildcards.model, fold=str(k))
            for k in range(CFG.training.folds)]


def external_source_file(pattern):
    return lambda wc: P(pattern, cohort=PLAN.external_source(wc.cohort))


def external_metrics(wildcards):
    c = wildcards.cohort
    return [P(layout.EXTERNAL_METRICS, cohort=c, task=t, model=m)
            for t in CFG.cohorts[c].tasks for m in external_models(c)]


rule external:
    input:
        checkpoints=external_checkpoints,
        features=cohort_slides(layout.FEATURES),
        sheet=P(layout.SHEET),
        source_sheet=external_source_file(layout.SHEET),
        source_splits=external_source_file(layout.SPLITS),
    output:
        predictions=P(layout.EXTERNAL_PREDICTIONS),
        metrics=P(layout.EXTERNAL_METRICS),
    params:
        checkpoints=lambda wc, input: " ".join(f"--checkpoint {shlex.quote(c)}" for c in input.checkpoints),
        features_dir=teacher_features_dir,
        out_dir=lambda wc, output: os.path.dirname(output.metrics),
    wildcard_constraints:
        task="survival|classification",
    log:
        P("logs/external/{cohort}/{task}/{model}.log"),
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=120,
    conda:
        "../envs/train.yaml"
    shell:
        "duopath external {params.checkpoints} --sheet {input.sheet:q} "
        "--features-dir {params.features_dir:q} --source-sheet {input.source_sheet:q} "
        "--source-splits {input.source_splits:q} --task {wildcards.task} "
        "--out-dir {params.out_dir:q} > {log:q} 2>&1"


ruleorder: external_report > report


rule external_report:
    input:
        metrics=external_metrics,
    output:
        table=P(layout.EXTERNAL_CSV),
        html=P(layout.REPORT),
    params:
        metrics=lambda wc, input: " ".join(f"--metrics {shlex.quote(m)}" for m in input.metrics),
        source=lambda wc: PLAN.external_source(wc.cohort),
    wildcard_constraints:
        cohort="|".join(c for c in PLAN.cohorts if PLAN.external_source(c)) or "(?!x)x",
    log:
        P(layout.LOGS, rule="external_report", name="report"),
    threads: 1
    conda:
        "../envs/report.yaml"
    shell:
        "duopath external-report {params.metrics} --cohort {wildcards.cohort} --source {params.source} "
        "--table-out {output.table:q} --out {output.html:q} > {log:q} 2>&1"
