# Stage 7: the histology-only student, distilled from the frozen teacher of the SAME cohort, task
# and fold (`student`), and the same architecture with the task loss only (`student_nokd`), so
# the report shows what distillation bought. One job per (cohort, task, model) trains all its
# folds, each from its own fold's teacher; outputs as the teacher's under
# results/{cohort}/{task}/{model}/fold{k}/. Each reads the teacher
# checkpoint (its split, bins/classes and task-loss settings) and the RNA file (the teacher's
# inputs for the distillation targets, and who has RNA; the student never sees genes). Every
# student is scored on every val/test patient with a usable slide; training patients without RNA
# take the task loss only (student.slide_only_patients: task) or are left out (exclude); the
# opt-in `student_kdonly` (student.ablations) is the student with exclude, on the same folds.
# A cohort without RNA has no teacher, so no student (PLAN.students). Logic:
# duopath.training.run (run_fold), duopath.training.objectives (student_step).
import re


rule student:
    input:
        teacher=PLAN.each_fold(layout.CHECKPOINT, model="teacher"),
        features=INPUTS.cohort_slides(layout.FEATURES),
        rna=P(layout.RNA_H5AD),
        splits=P(layout.SPLITS),
        sheet=P(layout.SHEET),
    output:
        checkpoint=PLAN.each_fold(layout.CHECKPOINT),
        train_log=PLAN.each_fold(layout.TRAIN_LOG),
        inner=PLAN.each_fold(layout.INNER_PREDICTIONS),
        predictions=PLAN.each_fold(layout.PREDICTIONS),
        metrics=PLAN.each_fold(layout.METRICS),
    params:
        settings=settings(CFG.student),
        features_dir=INPUTS.features_dir,
        seed=CFG.training.seed,
        folds=INPUTS.student_fold_args,
    wildcard_constraints:
        model="|".join(re.escape(m) for m in PLAN.student_models),
        task=TASK_PATTERN,
    log:
        P("logs/student/{cohort}/{task}/{model}.log"),
    benchmark:
        B("student", "{task}/{model}")
    threads: CFG.training.threads
    resources:
        mem_mb=lambda wc, attempt: int(min(CFG.student.feature_cache_gb, 64) * 1000 + 4000) * attempt,
        runtime=240,
        gpu=gpu_resource(CFG.student.device),
    conda:
        "../envs/train.yaml"
    shell:
        "{DUOPATH} train-student --sheet {input.sheet:q} --splits {input.splits:q} --rna {input.rna:q} "
        "--features-dir {params.features_dir:q} {params.folds} "
        "--model {wildcards.model} --task {wildcards.task} --seed {params.seed} "
        "--settings {params.settings} --cohort {wildcards.cohort} --threads {threads} "
        "--no-progress > {log:q} 2>&1"
