# Input functions shared by the rules (read the parse-time Plan; never open a slide here).


def slide_file(wildcards):
    """The slide of {cohort}/{slide}: the user's file, or the demo generator's output."""
    return PLAN.slide(wildcards.cohort, wildcards.slide)["slide_path"]


def mpp_arg(wildcards):
    """`--mpp X` when the sample sheet overrides the slide's µm/px, else nothing."""
    mpp = PLAN.slide_mpp(wildcards.cohort, wildcards.slide)
    return "" if mpp is None else f"--mpp {mpp}"


def cohort_slides(pattern):
    """Input function: ``pattern`` filled for every slide of {cohort}."""

    def _inputs(wildcards):
        return [
            P(pattern, cohort=wildcards.cohort, slide=s, encoder=ENCODER)
            for s in PLAN.slides(wildcards.cohort)
        ]

    return _inputs


def rna_source(wildcards):
    """The cohort's RNA input: the demo's counts, or the configured file/folder."""
    cohort = CFG.cohorts[wildcards.cohort]
    if cohort.demo is not None:
        return P(layout.DEMO_RNA, cohort=wildcards.cohort)
    return str(cohort.rna)
