# Stage 7: the histology-only student, distilled from the frozen teacher of the SAME cohort, task
# and fold (`student`), and the same architecture with the task loss only (`student_nokd`), so
# the report shows what distillation bought. One job per (cohort, task, model, fold); outputs
# as the teacher's under results/{cohort}/{task}/{model}/fold{k}/. Both read the teacher
# checkpoint (its patients, bins/classes and task-loss settings make the comparison paired) and
# the RNA file (the teacher's inputs for the distillation targets; the student never sees genes).
# Logic: duopath.training.student_trainer. Needs teacher.smk (teacher_features_dir, TEACHER_*).
import os

STUDENT_MODELS = ["student", "student_nokd"]


def student_targets(cohort):
    """metrics.json of both students for every task and fold of ``cohort`` (for `rule all`).

    No teacher (a cohort without RNA) means nothing to distil from: nothing is returned.
    """
    if not teacher_targets(cohort):
        return []
    c = CFG.cohorts[cohort]
    return [
        P(layout.METRICS, cohort=cohort, task=t, model=m, fold=str(k))
        for t in c.tasks
        for m in PLAN.allowed_models(cohort, STUDENT_MODELS)[0]
        for k in range(CFG.training.folds)
    ]


rule student:
    input:
        teacher=P(layout.CHECKPOINT, model="teacher"),
        features=cohort_slides(layout.FEATURES),
        rna=P(layout.RNA_H5AD),
        splits=P(layout.SPLITS),
        sheet=P(layout.SHEET),
    output:
        checkpoint=P(layout.CHECKPOINT),
        train_log=P(layout.TRAIN_LOG),
        inner=P(layout.INNER_PREDICTIONS),
        predictions=P(layout.PREDICTIONS),
        metrics=P(layout.METRICS),
    params:
        settings=settings(CFG.student),
        features_dir=teacher_features_dir,
        seed=CFG.training.seed,
        out_dir=lambda wc, output: os.path.dirname(output.metrics),
    wildcard_constraints:
        model="student|student_nokd",
        fold=r"\d+",
        task="survival|classification",
    log:
        P("logs/student/{cohort}/{task}/{model}/fold{fold}.log"),
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: int(min(CFG.student.feature_cache_gb, 64) * 1000 + 4000) * attempt,
        runtime=240,
        gpu=lambda wc: 1 if CFG.student.device.startswith("cuda") else 0,
    conda:
        "../envs/train.yaml"
    shell:
        "duopath train-student --sheet {input.sheet:q} --splits {input.splits:q} --rna {input.rna:q} "
        "--features-dir {params.features_dir:q} --teacher {input.teacher:q} --fold {wildcards.fold} "
        "--model {wildcards.model} --task {wildcards.task} --seed {params.seed} "
        "--settings {params.settings} --cohort {wildcards.cohort} --threads {threads} "
        "--no-progress --out-dir {params.out_dir:q} > {log:q} 2>&1"
