# Stage 4, RNA: the cohort's RNA input (GDC STAR folder, matrix or .h5ad) joined by ID to the
# canonical sample sheet -> rna/{cohort}.h5ad with raw counts, log-normalised X, HVG flags,
# tumour (T) / TME (E) gene groups and pathway scores, plus a QC figure and a text summary.
# Logic: duopath.rna (contract in duopath/rna/build.py); settings: the `rna:` config section.


rule rna:
    input:
        rna=INPUTS.rna_source,
        sheet=P(layout.SHEET),
        gene_sets=INPUTS.gene_set_files,
    output:
        h5ad=P(layout.RNA_H5AD),
        qc=report(
            P(layout.RNA_QC),
            caption="../workflow/report/rna_qc.rst",
            category="RNA",
            labels={"cohort": "{cohort}", "figure": "RNA QC"},
        ),
        summary=P(layout.RNA_SUMMARY),
    params:
        settings=settings(CFG.rna),
    log:
        P(layout.LOGS, rule="rna", name="rna"),
    benchmark:
        B("rna", "rna")
    resources:
        # ~1,200 TCGA samples x 60k GENCODE genes in float64 plus copies: a few GB.
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=60,
    threads: 1
    conda:
        "../envs/rna.yaml"
    shell:
        "{DUOPATH} rna --source {input.rna:q} --sheet {input.sheet:q} "
        "--settings {params.settings} --out {output.h5ad:q} --qc {output.qc:q} "
        "--summary {output.summary:q} > {log:q} 2>&1"
