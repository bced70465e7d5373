# Stage 4, RNA: the cohort's RNA input (GDC STAR folder, matrix or .h5ad) joined by ID to the
# canonical sample sheet -> rna/{cohort}.h5ad with raw counts, log-normalised X, HVG flags,
# tumour (T) / TME (E) gene groups and pathway scores, plus a QC figure and a text summary.
# Logic: duopath.rna (contract in duopath/rna/build.py); settings: the `rna:` config section.


def rna_gene_set_files(wildcards):
    """User gene-set files (GMT/CSV) as inputs, so editing one re-runs the rule."""
    return [s for s in CFG.rna.gene_sets if s != "hallmark"]


rule rna:
    input:
        rna=rna_source,
        sheet=P(layout.SHEET),
        gene_sets=rna_gene_set_files,
    output:
        h5ad=P(layout.RNA_H5AD),
        qc=P("rna/{cohort}.qc.png"),
        summary=P("rna/{cohort}.summary.txt"),
    params:
        settings=settings(CFG.rna),
    log:
        P(layout.LOGS, rule="rna", name="rna"),
    resources:
        # ~1,200 TCGA samples x 60k GENCODE genes in float64 plus copies: a few GB.
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=60,
    threads: 1
    conda:
        "../envs/rna.yaml"
    shell:
        "duopath rna --source {input.rna:q} --sheet {input.sheet:q} "
        "--settings {params.settings} --out {output.h5ad:q} --qc {output.qc:q} "
        "--summary {output.summary:q} > {log:q} 2>&1"
