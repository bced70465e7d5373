# The embedded demo cohort: slides, RNA counts and clinical table with a planted truth.
# One rule per demo cohort, because its outputs (one file per slide) are known from the
# seeded plan at parse time, without writing anything.

for _cohort in [c for c in PLAN.cohorts if PLAN.is_demo(c)]:

    rule:
        name:
            f"demo_{_cohort}"
        output:
            sheet=P(layout.DEMO_SHEET, cohort=_cohort),
            rna=P(layout.DEMO_RNA, cohort=_cohort),
            truth=P(layout.DEMO_TRUTH, cohort=_cohort),
            slides=[PLAN.slide(_cohort, s)["slide_path"] for s in PLAN.slides(_cohort)],
        params:
            settings=settings(CFG.cohorts[_cohort].demo),
            out_dir=P(layout.DEMO_DIR, cohort=_cohort),
        log:
            P("logs/demo/{c}.log", c=_cohort),
        # Slides render in parallel (same bytes whatever the count); every other job waits on
        # this one, so its threads would otherwise sit idle.
        threads: 2
        benchmark:
            B("demo", "demo", cohort=_cohort)
        resources:
            mem_mb=3000,
            runtime=30,
        conda:
            "../envs/wsi.yaml"
        shell:
            "{DUOPATH} demo --settings {params.settings} --out {params.out_dir:q} --threads {threads} "
            "> {log:q} 2>&1"
