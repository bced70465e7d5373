# Stage 1: tissue segmentation on a ~8 µm/px thumbnail (mask PNG + JSON + QC overlay).


rule segment:
    input:
        slide=slide_file,
    output:
        mask=P(layout.MASK_PNG),
        meta=P(layout.MASK_JSON),
        qc=P(layout.MASK_QC),
    params:
        settings=settings(CFG.segmentation),
        mpp=mpp_arg,
        on_error=CFG.on_slide_error,
    log:
        P("logs/segment/{cohort}/{slide}.log"),
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/wsi.yaml"
    shell:
        "duopath segment {input.slide} --slide-id {wildcards.slide} --settings {params.settings} "
        "{params.mpp} --on-error {params.on_error} "
        "--mask {output.mask} --meta {output.meta} --qc {output.qc} > {log} 2>&1"
