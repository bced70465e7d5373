# Stage 8a: tile heatmaps over the slide thumbnails for the report, one job per (cohort, task, model,
# fold) of `teacher` (T and E attention) and `student` (token importance ω, prototype clusters):
# results/{cohort}/{task}/{model}/fold{k}/heatmaps/*.png + heatmaps.json, for
# `report.heatmap_patients` TEST patients of the fold (highest / lowest risk in turn, or the most
# confident of each class). The report embeds every PNG found there. Slide files are not inputs: a
# missing one is skipped with a warning (the report still builds). Which folds get heatmaps:
# PLAN.heatmap_dirs. Logic: duopath.report.fold_heatmaps.
import re

from duopath.workflow import HEATMAP_MODELS


rule heatmaps:
    input:
        checkpoint=P(layout.CHECKPOINT),
        predictions=P(layout.PREDICTIONS),
        done=P(layout.METRICS),  # written last by the trainers: the fold is complete
        features=INPUTS.cohort_slides(layout.FEATURES),
        sheet=P(layout.SHEET),
        rna=INPUTS.teacher_rna,
    output:
        report(
            directory(P(layout.HEATMAPS_DIR)),
            patterns=["{name}.png"],
            caption="../workflow/report/heatmaps.rst",
            category="Heatmaps",
            subcategory="{cohort}: {task}",
            labels={"model": "{model}", "fold": "{fold}", "patient": "{name}"},
        ),
    params:
        features_dir=INPUTS.features_dir,
        patients=CFG.report.heatmap_patients,
        rna=INPUTS.rna_arg,
    wildcard_constraints:
        model="|".join(re.escape(m) for m in HEATMAP_MODELS),
        fold=r"\d+",
        task=TASK_PATTERN,
    log:
        P("logs/heatmaps/{cohort}/{task}/{model}/fold{fold}.log"),
    benchmark:
        B("heatmaps", "{task}/{model}/fold{fold}")
    threads: 2
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        "../envs/heatmaps.yaml"
    shell:
        "{DUOPATH} heatmaps --checkpoint {input.checkpoint:q} --predictions {input.predictions:q} "
        "--sheet {input.sheet:q} --features-dir {params.features_dir:q} {params.rna} "
        "--patients {params.patients} --threads {threads} --out {output:q} > {log:q} 2>&1"
