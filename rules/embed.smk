# Stage 3: tile features into zarr with the configured encoder (GPU when there is one).

# The encoder settings every embed job gets, the same for the per-slide and the batched rules;
# slides_per_job only says how jobs are cut (the features do not depend on it), so it is left out.
EMBED_SETTINGS = shlex.quote(CFG.encoder.model_dump_json(exclude={"slides_per_job"}))


rule embed:
    input:
        slide=slide_file,
        tiles=P(layout.TILES),
    output:
        directory(P(layout.FEATURES)),
    params:
        settings=EMBED_SETTINGS,
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


# Batched embedding: with encoder.slides_per_job = K > 1, one `duopath embed` process embeds K
# slides of a cohort (sample-sheet order), loading the encoder once; each slide still gets its
# own atomic store (duopath.encoding.batching says why the chunks are fixed). These rules win
# over the per-slide `embed` rule above; to (re-)embed ONE slide alone, restrict Snakemake to it:
#   snakemake <output>/features/<cohort>/<encoder>/<slide>.zarr --allowed-rules embed
if CFG.encoder.slides_per_job > 1:
    from duopath.encoding.batching import embed_args, slide_batches

    for _cohort in PLAN.cohorts:
        for _i, _chunk in enumerate(slide_batches(PLAN.slides(_cohort), CFG.encoder.slides_per_job)):

            rule:
                name:
                    f"embed_batch_{_cohort}_{_i}"
                input:
                    slides=[PLAN.slide(_cohort, s)["slide_path"] for s in _chunk],
                    tiles=[P(layout.TILES, cohort=_cohort, slide=s) for s in _chunk],
                output:
                    [directory(P(layout.FEATURES, cohort=_cohort, encoder=ENCODER, slide=s)) for s in _chunk],
                params:
                    settings=EMBED_SETTINGS,
                    args=embed_args(
                        _chunk,
                        slide_path=lambda s, c=_cohort: str(PLAN.slide(c, s)["slide_path"]),
                        tiles=lambda s, c=_cohort: P(layout.TILES, cohort=c, slide=s),
                        store=lambda s, c=_cohort: P(layout.FEATURES, cohort=c, encoder=ENCODER, slide=s),
                        mpp=lambda s, c=_cohort: PLAN.slide_mpp(c, s),
                    ),
                log:
                    P(f"logs/embed/{_cohort}/{ENCODER}/batch_{_i}.log"),
                threads: max(1, CFG.encoder.num_workers)
                resources:
                    mem_mb=6000,
                    runtime=60 + 10 * len(_chunk),
                    gpu=1 if CFG.encoder.device.startswith("cuda") else 0,
                conda:
                    "../envs/embed.yaml"
                shell:
                    "duopath embed {params.args} --settings {params.settings} --on-error " + CFG.on_slide_error + " > {log} 2>&1"

            workflow.ruleorder(f"embed_batch_{_cohort}_{_i}", "embed")
