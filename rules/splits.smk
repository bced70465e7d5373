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
    conda:
        "../envs/train.yaml"
    shell:
        "{DUOPATH} splits --sheet {input.sheet:q} --task {params.task} --settings {params.settings} "
        "--out {output.table:q} --info {output.info:q}"
