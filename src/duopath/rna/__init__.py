"""Stage 4, RNA-seq: read real formats, harmonise genes, join to patients, normalise, group.

Modules: :mod:`~duopath.rna.readers` (GDC STAR folder, matrix, h5ad),
:mod:`~duopath.rna.genes` (Ensembl/HGNC harmonisation), :mod:`~duopath.rna.join` (sample ↔
patient), :mod:`~duopath.rna.genesets` (GMT/CSV, tumour/TME groups),
:mod:`~duopath.rna.normalise` (scanpy normalisation, HVG, train-only scaler),
:mod:`~duopath.rna.scores` (pathway scores), :mod:`~duopath.rna.qc`,
:mod:`~duopath.rna.build` (end to end, and the h5ad contract), :mod:`~duopath.cli.rna` (the command).

Nothing is imported here, so ``import duopath.cli.rna`` stays fast (no scanpy).
"""


class RnaError(ValueError):
    """Bad RNA input or gene sets; the message names the file, sample or gene and what to do."""
