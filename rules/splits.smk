# Stage 5: one set of patient-level CV splits per cohort, shared by every model.


rule splits:
    input:
        sheet=P(layout.SHEET),
    output:
        table=P(layout.SPLITS),
        info=P(layout.SPLITS_INFO),
    params:
        settings=settings(CFG.training),
        task=lambda wc: CFG.cohorts[wc.cohort].primary_task,
    localrule: True
    shell:
        "duopath splits --sheet {input.sheet} --task {params.task} --settings {params.settings} "
        "--out {output.table} --info {output.info}"
