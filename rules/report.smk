# Stages 8-9: evaluation of every model's held-out predictions, and the cohort report.
#   evaluate: results/{cohort}/{task}/{model}/fold{k}/ -> results/{cohort}/metrics.csv (task x model
#             x fold x metric, with the reason of every n/a), summary.csv (mean ± std), and
#             comparisons.csv (every model vs the main one: paired tests + bootstrap CI)
#   report:   -> results/{cohort}/report.html (self-contained: plots embedded, no links)
# Logic: duopath.evaluation.collect, duopath.report. Include after the training rules (teacher,
# student, baselines): the model list below reads what they define (TEACHER_MODELS,
# teacher_targets, STUDENT_MODELS, student_targets).
import hashlib
import shlex

# Bootstrap replicates of the pooled primary-metric difference (C-index / AUC) per model pair.
REPORT_N_BOOT = 1000

# Models compared in a cohort's report, the MAIN model first (the reference of every paired
# comparison; `<main>_*` models form the ablation table): the teacher and its ablations, the
# students (teacher.smk, student.smk), then the baselines the cohort's data allows
# (baselines.smk). A cohort without RNA has no teacher: its main model is its first baseline.
MODELS_FOR_REPORT = {
    c: (list(TEACHER_MODELS) if teacher_targets(c) else [])
    + (list(STUDENT_MODELS) if student_targets(c) else [])
    + list(cohort_baselines(c)[0])
    + list(cohort_coxnet(c)[0])
    for c in PLAN.cohorts
}


def skipped_models(cohort):
    """``--skipped 'model=reason'`` arguments: configured models the cohort's data does not allow."""
    why = {**cohort_baselines(cohort)[1], **cohort_coxnet(cohort)[1]}
    if not teacher_targets(cohort):
        why.update({m: "the cohort has no RNA" for m in list(TEACHER_MODELS) + list(STUDENT_MODELS)})
    for m in list(TEACHER_MODELS) + list(STUDENT_MODELS):
        why.update(PLAN.allowed_models(cohort, [m])[1])
    return " ".join(f"--skipped {shlex.quote(f'{m}={r}')}" for m, r in why.items())


def report_models(cohort):
    """Models of ``cohort``'s report, main model first (no models: no evaluate/report jobs)."""
    return MODELS_FOR_REPORT.get(cohort, [])


def report_tasks(cohort):
    return list(CFG.cohorts[cohort].tasks)


def fold_outputs(pattern):
    """Input function: ``pattern`` (a per-fold result file) for every task, model and fold."""

    def _inputs(wildcards):
        c = wildcards.cohort
        return [
            P(pattern, cohort=c, task=t, model=m, fold=str(k))
            for t in report_tasks(c)
            for m in report_models(c)
            for k in range(CFG.training.folds)
        ]

    return _inputs


def report_targets(cohort):
    """The report of ``cohort`` when it has models to compare (for `rule all`)."""
    return [P(layout.REPORT, cohort=cohort)] if report_models(cohort) else []


def _model_args(wildcards):
    return " ".join(f"--model {shlex.quote(m)}" for m in report_models(wildcards.cohort))


def _task_args(wildcards):
    return " ".join(f"--task {t}" for t in report_tasks(wildcards.cohort))


# Provenance: a config change re-runs the report (params are a rerun trigger), which is cheap.
REPORT_CONFIG_HASH = hashlib.sha256(CFG.model_dump_json().encode()).hexdigest()[:12]


rule evaluate:
    input:
        # metrics.json is written last by every trainer: its presence means the fold is complete
        done=fold_outputs(layout.METRICS),
        predictions=fold_outputs(layout.PREDICTIONS),
        sheet=P(layout.SHEET),
        splits=P(layout.SPLITS),
    output:
        metrics=P(layout.METRICS_CSV),
        summary=P(layout.SUMMARY_CSV),
        comparisons=P(layout.COMPARISONS_CSV),
    params:
        results_dir=lambda wc: P(layout.COHORT_RESULTS, cohort=wc.cohort),
        models=_model_args,
        tasks=_task_args,
        n_boot=REPORT_N_BOOT,
        seed=CFG.training.seed,
    log:
        P(layout.LOGS, rule="evaluate", name="evaluate"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../envs/report.yaml"
    shell:
        "duopath evaluate --results-dir {params.results_dir:q} --sheet {input.sheet:q} "
        "--splits {input.splits:q} {params.models} {params.tasks} --n-boot {params.n_boot} "
        "--seed {params.seed} --metrics-out {output.metrics:q} --summary-out {output.summary:q} "
        "--comparisons-out {output.comparisons:q} > {log:q} 2>&1"


rule report:
    input:
        metrics=P(layout.METRICS_CSV),
        summary=P(layout.SUMMARY_CSV),
        comparisons=P(layout.COMPARISONS_CSV),
        predictions=fold_outputs(layout.PREDICTIONS),  # the plots pool them
        sheet=P(layout.SHEET),
        splits=P(layout.SPLITS),
        splits_info=P(layout.SPLITS_INFO),
        wsi_summary=lambda wc: [P(layout.WSI_SUMMARY)] if PLAN.has_slides(wc.cohort) else [],
        heatmaps=lambda wc: heatmap_targets(wc.cohort),
    output:
        html=P(layout.REPORT),
    params:
        results_dir=lambda wc: P(layout.COHORT_RESULTS, cohort=wc.cohort),
        config_hash=REPORT_CONFIG_HASH,
        # per model and task, spread over the folds: T and E (or ω and clusters) per patient
        max_heatmaps=CFG.report.heatmap_patients * 2,
        skipped=lambda wc: skipped_models(wc.cohort),
        time_unit=lambda wc: CFG.cohorts[wc.cohort].time_unit,
        wsi_arg=lambda wc, input: f"--wsi-summary {shlex.quote(input.wsi_summary[0])}" if input.wsi_summary else "",
    log:
        P(layout.LOGS, rule="report", name="report"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/report.yaml"
    shell:
        "duopath report --results-dir {params.results_dir:q} --sheet {input.sheet:q} "
        "--splits {input.splits:q} --splits-info {input.splits_info:q} "
        "{params.wsi_arg} --metrics {input.metrics:q} "
        "--summary {input.summary:q} --comparisons {input.comparisons:q} "
        "--cohort {wildcards.cohort} --config-hash {params.config_hash} "
        "--max-heatmaps {params.max_heatmaps} {params.skipped} --time-unit {params.time_unit:q} "
        "--out {output.html:q} > {log:q} 2>&1"
