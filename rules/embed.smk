# Stage 3: tile features into zarr with the configured encoder (GPU when there is one).
# The encoder settings every embed job gets are the same for the per-slide and the batched rules;
# slides_per_job and num_workers only say how jobs are cut and run (the features do not depend on
# them: EncoderConfig.JOB_KEYS), so they are left out and passed on their own. The worker count
# is read from CFG in the command, not a param: a param change would re-run every embed job.


rule embed:
    input:
        slide=INPUTS.slide_file,
        tiles=P(layout.TILES),
    output:
        directory(P(layout.FEATURES)),
    params:
        settings=settings(CFG.encoder),
        mpp=INPUTS.mpp_arg,
        on_error=CFG.on_slide_error,
    wildcard_constraints:
        encoder=ENCODER,
    log:
        P("logs/embed/{cohort}/{encoder}/{slide}.log"),
    benchmark:
        B("embed", "{encoder}/{slide}")
    threads: max(1, CFG.encoder.num_workers)
    resources:
        mem_mb=6000,
        runtime=60,
        gpu=gpu_resource(CFG.encoder.device),
    conda:
        "../envs/embed.yaml"
    shell:
        "{DUOPATH} embed {input.slide:q} --tiles {input.tiles:q} --slide-id {wildcards.slide:q} "
        "--settings {params.settings} --num-workers {CFG.encoder.num_workers} --threads {threads} {params.mpp} "
        "--on-error {params.on_error} --out {output:q} > {log:q} 2>&1"


# Batched embedding: with encoder.slides_per_job = K > 1, one `duopath embed` process embeds K
# slides of a cohort (sample-sheet order: PLAN.slide_batches), loading the encoder once; each
# slide still gets its own atomic store (duopath.batches says why the chunks are fixed, and what a
# change to one slide redoes). These rules win over the per-slide `embed` rule above; to
# (re-)embed ONE slide alone, restrict Snakemake to it:
#   snakemake <output>/features/<cohort>/<encoder>/<slide>.zarr --allowed-rules embed
if CFG.encoder.slides_per_job > 1:
    for _cohort in PLAN.cohorts:
        for _i, _chunk in enumerate(PLAN.slide_batches(_cohort, CFG.encoder.slides_per_job)):

            rule:
                name:
                    f"embed_batch_{_cohort}_{_i}"
                input:
                    slides=[PLAN.slide(_cohort, s)["slide_path"] for s in _chunk],
                    tiles=[P(layout.TILES, cohort=_cohort, slide=s) for s in _chunk],
                output:
                    [directory(P(layout.FEATURES, cohort=_cohort, encoder=ENCODER, slide=s)) for s in _chunk],
                params:
                    settings=settings(CFG.encoder),
                    args=INPUTS.embed_batch_args(_cohort, _chunk),
                    on_error=CFG.on_slide_error,
                log:
                    P(f"logs/embed/{_cohort}/{ENCODER}/batch_{_i}.log"),
                benchmark:
                    B("embed", f"{ENCODER}/batch_{_i}", cohort=_cohort)
                threads: max(1, CFG.encoder.num_workers)
                resources:
                    mem_mb=6000,
                    runtime=60 + 10 * len(_chunk),
                    gpu=gpu_resource(CFG.encoder.device),
                conda:
                    "../envs/embed.yaml"
                shell:
                    "{DUOPATH} embed {params.args} --settings {params.settings} "
                    "--num-workers {CFG.encoder.num_workers} --threads {threads} --on-error {params.on_error} > {log:q} 2>&1"

            workflow.ruleorder(f"embed_batch_{_cohort}_{_i}", "embed")
