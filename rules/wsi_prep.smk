# Stages 1+2 batched: with segmentation.slides_per_job = K > 1, one `duopath wsi-prep` process
# segments and tiles K slides of a cohort (sample-sheet order: PLAN.slide_batches), each slide's
# tiling right after its segmentation, with one Python start and one set of imports for the lot.
# Every slide keeps its own outputs (the same files as the per-slide `segment` and `tile` rules,
# written the same way) and a bad slide is still a `failed` row that does not stop the others.
# These rules win over `segment` and `tile`; a change to one slide redoes its batch
# (duopath.batches says why, and what that costs). To redo ONE slide alone:
#   snakemake <output>/tiles/<cohort>/<slide>.parquet --allowed-rules segment tile
if CFG.segmentation.slides_per_job > 1:
    for _cohort in PLAN.cohorts:
        for _i, _chunk in enumerate(PLAN.slide_batches(_cohort, CFG.segmentation.slides_per_job)):

            rule:
                name:
                    f"wsi_prep_batch_{_cohort}_{_i}"
                input:
                    slides=[PLAN.slide(_cohort, s)["slide_path"] for s in _chunk],
                output:
                    mask=[PLAN.prep_files(_cohort, s)["mask"] for s in _chunk],
                    meta=[PLAN.prep_files(_cohort, s)["meta"] for s in _chunk],
                    qc=[
                        report(
                            PLAN.prep_files(_cohort, s)["qc"],
                            caption="../workflow/report/mask_qc.rst",
                            category="Slide QC",
                            subcategory=f"{_cohort}: tissue masks",
                            labels={"cohort": _cohort, "slide": s, "figure": "tissue mask"},
                        )
                        for s in _chunk
                    ],
                    tiles=[PLAN.prep_files(_cohort, s)["tiles"] for s in _chunk],
                    tiles_qc=[
                        report(
                            PLAN.prep_files(_cohort, s)["tiles_qc"],
                            caption="../workflow/report/tiles_qc.rst",
                            category="Slide QC",
                            subcategory=f"{_cohort}: tile grids",
                            labels={"cohort": _cohort, "slide": s, "figure": "tile grid"},
                        )
                        for s in _chunk
                    ],
                params:
                    # the same settings the per-slide rules get (slides_per_job only cuts jobs)
                    segmentation=settings(CFG.segmentation),
                    tiling=settings(CFG.tiling),
                    args=INPUTS.wsi_prep_batch_args(_cohort, _chunk),
                    on_error=CFG.on_slide_error,
                log:
                    P(f"logs/wsi_prep/{_cohort}/batch_{_i}.log"),
                benchmark:
                    B("wsi_prep", f"batch_{_i}", cohort=_cohort)
                resources:
                    mem_mb=2000,
                    runtime=10 + 2 * len(_chunk),
                conda:
                    "../envs/wsi.yaml"
                shell:
                    "{DUOPATH} wsi-prep {params.args} --segmentation {params.segmentation} "
                    "--tiling {params.tiling} --on-error {params.on_error} > {log:q} 2>&1"

            workflow.ruleorder(f"wsi_prep_batch_{_cohort}_{_i}", "segment")
            workflow.ruleorder(f"wsi_prep_batch_{_cohort}_{_i}", "tile")
