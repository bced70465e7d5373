# Stage 3: tile features into zarr with the configured encoder (GPU when there is one).


rule embed:
    input:
        slide=slide_file,
        tiles=P(layout.TILES),
    output:
        directory(P(layout.FEATURES)),
    params:
        settings=settings(CFG.encoder),
        mpp=mpp_arg,
    wildcard_constraints:
        encoder=ENCODER,
    log:
        P("logs/embed/{cohort}/{encoder}/{slide}.log"),
    threads: max(1, CFG.encoder.num_workers)
    resources:
        mem_mb=6000,
        runtime=60,
        gpu=lambda wc: 1 if CFG.encoder.device != "cpu" and CFG.encoder.device.startswith("cuda") else 0,
    conda:
        "../envs/embed.yaml"
    shell:
        "duopath embed {input.slide} --tiles {input.tiles} --slide-id {wildcards.slide} "
        "--settings {params.settings} {params.mpp} --on-error " + CFG.on_slide_error + " --out {output} > {log} 2>&1"
