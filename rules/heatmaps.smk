# Stage 8a: tile heatmaps over the slide thumbnails for the report, one job per (cohort, task, model,
# fold) of `teacher` (T and E attention) and `student` (token importance ω, prototype clusters):
# results/{cohort}/{task}/{model}/fold{k}/heatmaps/*.png + heatmaps.json, for
# `report.heatmap_patients` TEST patients of the fold (highest / lowest risk in turn, or the most
# confident of each class). The report embeds every PNG found there. Slide files are not inputs: a
# missing one is skipped with a warning (the report still builds). Logic: duopath.report.fold_heatmaps.
# Include after teacher.smk and student.smk (teacher_targets, student_targets, teacher_features_dir)
# and before report.smk (rule report waits for heatmap_targets).

HEATMAP_MODELS = ["teacher", "student"]


def heatmap_targets(cohort):
    """The heatmaps folders of ``cohort``: the teacher's when it has one, the student's when it has one."""
    if not teacher_targets(cohort):
        return []
    models = ["teacher"] + (["student"] if student_targets(cohort) else [])
    return [
        P(layout.HEATMAPS_DIR, cohort=cohort, task=t, model=m, fold=str(k))
        for t in CFG.cohorts[cohort].tasks
        for m in models
        for k in range(CFG.training.folds)
    ]


def _heatmap_rna(wildcards):
    """The RNA file for a teacher (its genes); a student needs none."""
    return P(layout.RNA_H5AD, cohort=wildcards.cohort) if wildcards.model == "teacher" else []


rule heatmaps:
    input:
        checkpoint=P(layout.CHECKPOINT),
        predictions=P(layout.PREDICTIONS),
        done=P(layout.METRICS),  # written last by the trainers: the fold is complete
        features=cohort_slides(layout.FEATURES),
        sheet=P(layout.SHEET),
        rna=_heatmap_rna,
    output:
        directory(P(layout.HEATMAPS_DIR)),
    params:
        features_dir=teacher_features_dir,
        patients=CFG.report.heatmap_patients,
        rna=lambda wc, input: f"--rna {shlex.quote(input.rna)}" if input.rna else "",
    wildcard_constraints:
        model="|".join(HEATMAP_MODELS),
        fold=r"\d+",
        task="survival|classification",
    log:
        P("logs/heatmaps/{cohort}/{task}/{model}/fold{fold}.log"),
    threads: 2
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        "../envs/heatmaps.yaml"
    shell:
        "duopath heatmaps --checkpoint {input.checkpoint:q} --predictions {input.predictions:q} "
        "--sheet {input.sheet:q} --features-dir {params.features_dir:q} {params.rna} "
        "--patients {params.patients} --threads {threads} --out {output:q} > {log:q} 2>&1"
