# The canonical, validated sample sheet every later rule joins on (by ID, never by row).


rule sample_sheet:
    input:
        lambda wc: PLAN.sheet_source(wc.cohort),
    output:
        P(layout.SHEET),
    params:
        settings=lambda wc: settings(CFG.cohorts[wc.cohort]),
        demo_dir=lambda wc: P(layout.DEMO_DIR, cohort=wc.cohort),
    localrule: True
    conda:
        "../envs/wsi.yaml"
    shell:
        "{DUOPATH} sheet --cohort-settings {params.settings} --source {input:q} "
        "--demo-dir {params.demo_dir:q} --out {output:q}"
