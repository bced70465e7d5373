# Stage 8a: tile heatmaps over the slide thumbnails for the report, of `teacher` (T and E attention)
# and `student` (token importance ω, prototype clusters). One job per (cohort, task, model) paints
# every fold in one process (torch imported and the sheet read once); the outputs are still per
# fold: results/{cohort}/{task}/{model}/fold{k}/heatmaps/*.png + heatmaps.json, for
# `report.heatmap_patients` TEST patients of the fold (highest / lowest risk in turn, or the most
# confident of each class). One fold alone: `duopath heatmaps --checkpoint C --predictions P --out D`.
# The report embeds every PNG found there. Slide files are not inputs: a missing one is skipped with
# a warning (the report still builds). Which folds get heatmaps: PLAN.heatmap_dirs. Logic:
# duopath.report.fold_heatmaps.
import re

from duopath.workflow import HEATMAP_MODELS


rule heatmaps:
    input:
        checkpoint=PLAN.each_fold(layout.CHECKPOINT),
        predictions=PLAN.each_fold(layout.PREDICTIONS),
        done=PLAN.each_fold(layout.METRICS),  # written last by the trainers: the fold is complete
        features=INPUTS.cohort_slides(layout.FEATURES),
        sheet=P(layout.SHEET),
        rna=INPUTS.teacher_rna,
    output:
        [
            report(
                directory(folder),
                patterns=["{name}.png"],
                caption="../workflow/report/heatmaps.rst",
                category="Heatmaps",
                subcategory="{cohort}: {task}",
                labels={"model": "{model}", "fold": fold, "patient": "{name}"},
            )
            for fold, folder in zip(PLAN.folds, PLAN.each_fold(layout.HEATMAPS_DIR))
        ],
    params:
        folds=INPUTS.heatmap_fold_args,
        features_dir=INPUTS.features_dir,
        patients=CFG.report.heatmap_patients,
        rna=INPUTS.rna_arg,
    wildcard_constraints:
        model="|".join(re.escape(m) for m in HEATMAP_MODELS),
        task=TASK_PATTERN,
    log:
        P("logs/heatmaps/{cohort}/{task}/{model}.log"),
    benchmark:
        B("heatmaps", "{task}/{model}")
    threads: CFG.training.threads
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../envs/heatmaps.yaml"
    shell:
        "{DUOPATH} heatmaps {params.folds} --sheet {input.sheet:q} --features-dir {params.features_dir:q} "
        "{params.rna} --patients {params.patients} --threads {threads} > {log:q} 2>&1"
