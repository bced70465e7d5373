# Stage 2: nested multi-magnification tile grids by µm/px (10x parents, 20x children), the
# cohort's slide table (status, tissue area, tiles) and its QC contact sheet.


rule tile:
    input:
        mask=P(layout.MASK_PNG),
        meta=P(layout.MASK_JSON),
        qc=P(layout.MASK_QC),
    output:
        tiles=P(layout.TILES),
        qc=report(
            P(layout.TILES_QC),
            caption="../workflow/report/tiles_qc.rst",
            category="Slide QC",
            subcategory="{cohort}: tile grids",
            labels={"cohort": "{cohort}", "slide": "{slide}", "figure": "tile grid"},
        ),
    params:
        settings=settings(CFG.tiling),
    log:
        P("logs/tile/{cohort}/{slide}.log"),
    benchmark:
        B("tile", "{slide}")
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/wsi.yaml"
    shell:
        "{DUOPATH} tile --mask {input.mask:q} --meta {input.meta:q} --settings {params.settings} "
        "--out {output.tiles:q} --qc-in {input.qc:q} --qc-out {output.qc:q} > {log:q} 2>&1"


rule wsi_summary:
    input:
        meta=INPUTS.cohort_slides(layout.MASK_JSON),
        tiles=INPUTS.cohort_slides(layout.TILES),
        features=INPUTS.cohort_slides(layout.FEATURES),
    output:
        report(
            P(layout.WSI_SUMMARY),
            caption="../workflow/report/wsi_summary.rst",
            category="Slide QC",
            labels={"cohort": "{cohort}", "table": "slides"},
        ),
    params:
        args=INPUTS.summary_args,
    localrule: True
    conda:
        "../envs/wsi.yaml"
    shell:
        "{DUOPATH} wsi-summary {params.args} --out {output:q}"


rule qc_contact_sheet:
    input:
        summary=P(layout.WSI_SUMMARY),
        images=INPUTS.cohort_slides(layout.TILES_QC),
    output:
        report(
            P(layout.QC_CONTACT_SHEET),
            caption="../workflow/report/contact_sheet.rst",
            category="Slide QC",
            labels={"cohort": "{cohort}", "figure": "contact sheet"},
        ),
    params:
        images=INPUTS.contact_sheet_args,
    log:
        P(layout.LOGS, rule="qc_contact_sheet", name="contact_sheet"),
    benchmark:
        B("qc_contact_sheet", "contact_sheet")
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/report.yaml"
    shell:
        "{DUOPATH} contact-sheet --wsi-summary {input.summary:q} {params.images} "
        "--out {output:q} > {log:q} 2>&1"
