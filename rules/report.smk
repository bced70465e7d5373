# Stages 8-9: evaluation of every model's held-out predictions, and the cohort report.
#   evaluate: results/{cohort}/{task}/{model}/fold{k}/ -> results/{cohort}/metrics.csv (task x model
#             x fold x metric, with the reason of every n/a), summary.csv (mean ± std), and
#             comparisons.csv (every model vs the main one: paired tests + bootstrap CI), and
#             reference.csv (a demo cohort's planted truth scored on the main model's test
#             patients: the report's ceiling line; empty for any other cohort)
#   report:   -> results/{cohort}/report.html (self-contained: plots embedded, no links), its
#             figures as PNG files (for `snakemake --report`), with the jobs' benchmarks summarised
# The models and their order (main model first) are PLAN.report_models. Logic:
# duopath.evaluation.collect, duopath.report.


rule evaluate:
    input:
        # metrics.json is written last by every trainer: its presence means the fold is complete
        done=INPUTS.fold_outputs(layout.METRICS),
        predictions=INPUTS.fold_outputs(layout.PREDICTIONS),
        sheet=P(layout.SHEET),
        splits=P(layout.SPLITS),
        truth=INPUTS.truth,
    output:
        metrics=report(P(layout.METRICS_CSV), caption="../workflow/report/metrics.rst",
                       category="Results", labels={"cohort": "{cohort}", "table": "metrics per fold"}),
        summary=report(P(layout.SUMMARY_CSV), caption="../workflow/report/summary.rst",
                       category="Results", labels={"cohort": "{cohort}", "table": "summary"}),
        comparisons=report(P(layout.COMPARISONS_CSV), caption="../workflow/report/comparisons.rst",
                           category="Results", labels={"cohort": "{cohort}", "table": "comparisons"}),
        reference=P(layout.REFERENCE_CSV),
    params:
        results_dir=INPUTS.results_dir,
        truth=INPUTS.truth_arg,
        models=INPUTS.model_args,
        tasks=INPUTS.task_args,
        n_boot=CFG.report.n_boot,
        seed=CFG.training.seed,
    log:
        P(layout.LOGS, rule="evaluate", name="evaluate"),
    benchmark:
        B("evaluate", "evaluate")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../envs/report.yaml"
    shell:
        "{DUOPATH} evaluate --results-dir {params.results_dir:q} --sheet {input.sheet:q} "
        "--splits {input.splits:q} {params.models} {params.tasks} --n-boot {params.n_boot} "
        "--seed {params.seed} --metrics-out {output.metrics:q} --summary-out {output.summary:q} "
        "--comparisons-out {output.comparisons:q} {params.truth} --reference-out {output.reference:q} "
        "> {log:q} 2>&1"


rule report:
    input:
        metrics=P(layout.METRICS_CSV),
        summary=P(layout.SUMMARY_CSV),
        comparisons=P(layout.COMPARISONS_CSV),
        reference=P(layout.REFERENCE_CSV),
        predictions=INPUTS.fold_outputs(layout.PREDICTIONS),  # the plots pool them
        sheet=P(layout.SHEET),
        splits=P(layout.SPLITS),
        splits_info=P(layout.SPLITS_INFO),
        wsi_summary=INPUTS.wsi_summary,  # none for an RNA-only cohort
        heatmaps=INPUTS.heatmap_dirs,
    output:
        html=report(P(layout.REPORT), caption="../workflow/report/report_html.rst",
                    category="Results", labels={"cohort": "{cohort}", "page": "duopath report"}),
        figures=report(
            directory(P(layout.REPORT_FIGURES)),
            patterns=["{name}.png"],
            caption="../workflow/report/figures.rst",
            category="Results",
            subcategory="{cohort}: figures",
            labels={"figure": "{name}"},
        ),
    params:
        results_dir=INPUTS.results_dir,
        benchmarks_dir=INPUTS.benchmarks_dir,
        # provenance: a config change re-runs the report (params are a rerun trigger); cheap
        config_hash=PLAN.config_hash,
        # per model and task, spread over the folds: T and E (or ω and clusters) per patient
        max_heatmaps=CFG.report.heatmap_patients * 2,
        skipped=INPUTS.skipped_args,
        time_unit=lambda wc: CFG.cohorts[wc.cohort].time_unit,
        wsi_arg=INPUTS.wsi_summary_arg,
    log:
        P(layout.LOGS, rule="report", name="report"),
    benchmark:
        B("report", "report")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/report.yaml"
    shell:
        "{DUOPATH} report --results-dir {params.results_dir:q} --sheet {input.sheet:q} "
        "--splits {input.splits:q} --splits-info {input.splits_info:q} "
        "{params.wsi_arg} --metrics {input.metrics:q} "
        "--summary {input.summary:q} --comparisons {input.comparisons:q} --reference {input.reference:q} "
        "--benchmarks-dir {params.benchmarks_dir:q} "
        "--cohort {wildcards.cohort} --config-hash {params.config_hash} "
        "--max-heatmaps {params.max_heatmaps} {params.skipped} --time-unit {params.time_unit:q} "
        "--out {output.html:q} --figures-dir {output.figures:q} > {log:q} 2>&1"
