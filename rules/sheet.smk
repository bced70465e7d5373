# The canonical, validated sample sheet every later rule joins on (by ID, never by row).


rule sample_sheet:
    input:
        lambda wc: PLAN.sheet_source(wc.cohort),
    output:
        P(layout.SHEET),
    params:
        settings=lambda wc: settings(CFG.cohorts[wc.cohort]),
        cohort="{cohort}",
        demo_dir=lambda wc: P(layout.DEMO_DIR, cohort=wc.cohort),
    localrule: True
    shell:
        "duopath sheet --cohort-settings {params.settings} --source {input} "
        "--demo-dir {params.demo_dir} --out {output}"
