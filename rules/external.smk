# Stage 10: external test cohorts (`external_of: <source>`). Their slides go through the same
# segment/tile/embed rules (same encoder and tiling); nothing is trained on them. Every slide-only
# model of the source (students, abmil/transmil: PLAN.external_trained_models) is applied as
# trained: each outer fold's model and their ensemble (mean risk / mean class probabilities),
# scored with the source's metrics.
#   external:        -> results/{cohort}/external/{task}/{model}/predictions.parquet + metrics.json
#   external_report: -> results/{cohort}/external.csv + results/{cohort}/report.html
# Logic: duopath.evaluation.external, duopath.report.external.
import os


rule external:
    input:
        checkpoints=INPUTS.external_checkpoints,
        features=INPUTS.cohort_slides(layout.FEATURES),
        sheet=P(layout.SHEET),
        source_sheet=INPUTS.external_source_file(layout.SHEET),
        source_splits=INPUTS.external_source_file(layout.SPLITS),
    output:
        predictions=P(layout.EXTERNAL_PREDICTIONS),
        metrics=P(layout.EXTERNAL_METRICS),
    params:
        checkpoints=INPUTS.checkpoint_args,
        features_dir=INPUTS.features_dir,
        out_dir=lambda wc, output: os.path.dirname(output.metrics),
    wildcard_constraints:
        task=TASK_PATTERN,
    log:
        P("logs/external/{cohort}/{task}/{model}.log"),
    benchmark:
        B("external", "{task}/{model}")
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=120,
    conda:
        "../envs/train.yaml"
    shell:
        "{DUOPATH} external {params.checkpoints} --sheet {input.sheet:q} "
        "--features-dir {params.features_dir:q} --source-sheet {input.source_sheet:q} "
        "--source-splits {input.source_splits:q} --task {wildcards.task} "
        "--out-dir {params.out_dir:q} > {log:q} 2>&1"


# An external cohort's report.html is its external-validation page, not the training report.
ruleorder: external_report > report


rule external_report:
    input:
        metrics=INPUTS.external_metrics,
    output:
        table=P(layout.EXTERNAL_CSV),
        html=P(layout.REPORT),
    params:
        metrics=INPUTS.metrics_args,
        source=lambda wc: PLAN.external_source(wc.cohort),
    wildcard_constraints:
        cohort="|".join(c for c in PLAN.cohorts if PLAN.external_source(c)) or "(?!x)x",
    log:
        P(layout.LOGS, rule="external_report", name="report"),
    benchmark:
        B("external_report", "report")
    threads: 1
    conda:
        "../envs/report.yaml"
    shell:
        "{DUOPATH} external-report {params.metrics} --cohort {wildcards.cohort} "
        "--source {params.source:q} --table-out {output.table:q} --out {output.html:q} > {log:q} 2>&1"
