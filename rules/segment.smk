# Stage 1: tissue segmentation on a ~8 µm/px thumbnail (mask PNG + JSON + QC overlay), one job per
# slide. With segmentation.slides_per_job > 1 the batched rules of rules/wsi_prep.smk segment and
# tile groups of slides instead; this rule then redoes one slide alone (--allowed-rules segment).
# slides_per_job only says how jobs are cut (SegmentationConfig.JOB_KEYS), so settings() leaves it out.


rule segment:
    input:
        slide=INPUTS.slide_file,
    output:
        mask=P(layout.MASK_PNG),
        meta=P(layout.MASK_JSON),
        qc=report(
            P(layout.MASK_QC),
            caption="../workflow/report/mask_qc.rst",
            category="Slide QC",
            subcategory="{cohort}: tissue masks",
            labels={"cohort": "{cohort}", "slide": "{slide}", "figure": "tissue mask"},
        ),
    params:
        settings=settings(CFG.segmentation),
        mpp=INPUTS.mpp_arg,
        on_error=CFG.on_slide_error,
    log:
        P("logs/segment/{cohort}/{slide}.log"),
    benchmark:
        B("segment", "{slide}")
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/wsi.yaml"
    shell:
        "{DUOPATH} segment {input.slide:q} --slide-id {wildcards.slide:q} --settings {params.settings} "
        "{params.mpp} --on-error {params.on_error} "
        "--mask {output.mask:q} --meta {output.meta:q} --qc {output.qc:q} > {log:q} 2>&1"
