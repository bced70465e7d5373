# Stage 2: nested multi-magnification tile grids by µm/px (10x parents, 20x children).

import shlex


rule tile:
    input:
        mask=P(layout.MASK_PNG),
        meta=P(layout.MASK_JSON),
        qc=P(layout.MASK_QC),
    output:
        tiles=P(layout.TILES),
        qc=P(layout.TILES_QC),
    params:
        settings=settings(CFG.tiling),
    log:
        P("logs/tile/{cohort}/{slide}.log"),
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/wsi.yaml"
    shell:
        "duopath tile --mask {input.mask} --meta {input.meta} --settings {params.settings} "
        "--out {output.tiles} --qc-in {input.qc} --qc-out {output.qc} > {log} 2>&1"


rule wsi_summary:
    input:
        meta=cohort_slides(layout.MASK_JSON),
        tiles=cohort_slides(layout.TILES),
        features=cohort_slides(layout.FEATURES),
    output:
        P(layout.WSI_SUMMARY),
    params:
        args=lambda wc, input: " ".join(
            f"--mask-meta {shlex.quote(m)} --tiles {shlex.quote(t)} --features {shlex.quote(f)}"
            for m, t, f in zip(input.meta, input.tiles, input.features)
        ),
    localrule: True
    shell:
        "duopath wsi-summary {params.args} --out {output}"
