"""The ``rna:`` section of the config (stage 4) and the default tumour/TME Hallmark sets.

Split from :mod:`duopath.config` because the RNA input options (value types, gene maps,
duplicate and HVG rules, and the checks between them) are the largest single section;
:mod:`duopath.config` re-exports everything here, so ``from duopath.config import RnaConfig``
keeps working.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from duopath.config_base import StrictModel

TUMOUR_SETS: tuple[str, ...] = (
    "HALLMARK_E2F_TARGETS",
    "HALLMARK_G2M_CHECKPOINT",
    "HALLMARK_MYC_TARGETS_V1",
    "HALLMARK_MYC_TARGETS_V2",
    "HALLMARK_MITOTIC_SPINDLE",
    "HALLMARK_DNA_REPAIR",
    "HALLMARK_GLYCOLYSIS",
    "HALLMARK_MTORC1_SIGNALING",
    "HALLMARK_UNFOLDED_PROTEIN_RESPONSE",
)
"""Hallmark sets of the tumour (T) gene group by default: tumour-intrinsic proliferation and
metabolism. The demo plants its tumour factor in exactly these genes (``demo.rna``)."""
TME_SETS: tuple[str, ...] = (
    "HALLMARK_INFLAMMATORY_RESPONSE",
    "HALLMARK_INTERFERON_GAMMA_RESPONSE",
    "HALLMARK_INTERFERON_ALPHA_RESPONSE",
    "HALLMARK_IL2_STAT5_SIGNALING",
    "HALLMARK_IL6_JAK_STAT3_SIGNALING",
    "HALLMARK_ALLOGRAFT_REJECTION",
    "HALLMARK_COMPLEMENT",
    "HALLMARK_TNFA_SIGNALING_VIA_NFKB",
    "HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION",
    "HALLMARK_ANGIOGENESIS",
    "HALLMARK_COAGULATION",
)
"""Hallmark sets of the tumour-microenvironment (E) group by default: immune, inflammatory,
stromal. The demo plants its TME factor in exactly these genes."""


class RnaConfig(StrictModel):
    """RNA-seq ingestion, normalisation and tumour/TME gene grouping (stage 4, ``duopath.rna``).

    Defaults follow the paper where it says something (top 30 % highly variable genes) and are
    otherwise chosen to be safe: the pathway score is rank-based per sample (no cohort-wide
    statistic, so adding or removing patients never changes another patient's score), and
    genes shared by the tumour and TME groups are dropped from both, so the two subspaces do
    not start from the same inputs. Gene-set names are exact (``HALLMARK_E2F_TARGETS``).
    """

    value_type: Literal["counts", "tpm", "fpkm", "fpkm_uq", "log", "zscore"] = Field(
        "counts",
        description="what the input values are (GDC STAR: which column is read). counts: "
        "library-size normalised, then log1p; tpm / fpkm / fpkm_uq: log1p as given; log: "
        "already log-scale (log2 microarray intensities, log-CPM...), used as given; zscore: "
        "already standardised per gene, used as given and no HVG selection (every gene kept)",
    )
    gene_map: Path | None = Field(
        None,
        description="CSV/TSV with two columns, input ID then HGNC symbol (e.g. a microarray "
        "platform's probe -> gene symbol table); IDs it lists take its symbol, the others are "
        "read as Ensembl IDs or symbols",
    )
    min_mapped_fraction: float = Field(
        0.5, ge=0.0, le=1.0,
        description="stop with an error when fewer than this share of input genes are "
        "recognised (Ensembl ID, known HGNC symbol, gene-set member or in gene_map): the IDs "
        "are probably of another kind (probes, another species) and need rna.gene_map",
    )
    hvg_fraction: float = Field(0.3, gt=0.0, le=1.0, description="share of genes flagged HVG")
    protein_coding_only: bool = Field(
        False,
        description="keep protein-coding genes only (GDC: gene_type column; other inputs: genes "
        "of the packaged GENCODE v31 protein-coding/TR_C/IG_C map)",
    )
    hvg_method: Literal["auto", "seurat", "variance", "none"] = Field(
        "auto",
        description="seurat: dispersion normalised within mean bins (scanpy; assumes log1p of "
        "normalised values); variance: plain variance of the log values; none: every gene is "
        "flagged (z-scores have unit variance by construction). auto: seurat for counts / tpm / "
        "fpkm / fpkm_uq, variance for log, none for zscore",
    )
    target_sum: float = Field(1e6, gt=0, description="counts are scaled to this library size")
    duplicate_rule: Literal["auto", "sum", "max_mean", "mean"] = Field(
        "auto",
        description="several input genes with one HGNC symbol (or several probes of one gene): "
        "sum them (reads of one gene; linear scales only), keep the one with the highest mean, "
        "or average them (log / z-score values, as limma's avereps). auto: sum for counts / tpm "
        "/ fpkm / fpkm_uq, mean for log / zscore",
    )
    duplicate_genes: Literal["error", "sum", "first"] = Field(
        "error",
        description="one gene listed on several rows of the input (the same symbol, or the same "
        "Ensembl ID in any version): error names the genes; sum adds the rows; first keeps the "
        "first row. A repeated row is usually a merge or export mistake, so it is not guessed",
    )
    join: Literal["auto", "sample", "patient"] = Field(
        "auto",
        description="sample: match RNA samples to the sheet's rna_sample_id; patient: to "
        "patient_id (TCGA barcode / GDC Case ID); auto: sample if any rna_sample_id is filled",
    )
    sample_type_preference: list[str] = Field(
        default_factory=lambda: ["01", "03", "09", "02", "05", "06", "07", "11"],
        description="TCGA sample-type codes, best first, choosing one RNA sample per patient "
        "(01 primary tumour, 03/09 primary blood cancer, 02 recurrent, 05 new primary, "
        "06/07 metastatic, 11 normal); unlisted codes rank last, ties by sample ID",
    )
    drop_empty_samples: bool = Field(
        False, description="drop (with a warning) samples whose counts are all zero, not fail"
    )
    gene_sets: list[str] = Field(
        default_factory=lambda: ["hallmark"],
        description="gene-set sources: 'hallmark' (packaged MSigDB Hallmarks v2024.1) and/or "
        "paths to GMT or CSV/TSV files (e.g. ESTIMATE SI_geneset.gmt, MCAT signatures.csv)",
    )
    tumour_sets: list[str] = Field(
        default_factory=lambda: list(TUMOUR_SETS),
        description="gene sets whose genes form the tumour (T) group",
    )
    tme_sets: list[str] = Field(
        default_factory=lambda: list(TME_SETS),
        description="gene sets whose genes form the tumour-microenvironment (E) group",
    )
    group_overlap: Literal["drop", "both", "tumour", "tme"] = Field(
        "drop", description="a gene in both groups: drop it, keep it in both, or give it to one"
    )
    groups_from_hvg: bool = Field(
        True, description="restrict the T/E groups to highly variable genes (as the paper does)"
    )
    score_method: Literal["rank", "score_genes"] = Field(
        "rank",
        description="pathway score per sample: rank (singscore-like, per sample only) or "
        "scanpy.tl.score_genes (set mean minus a control-gene mean)",
    )
    min_set_genes: int = Field(
        3, ge=1, description="gene sets with fewer genes present in the data are not scored"
    )

    @field_validator("sample_type_preference")
    @classmethod
    def _codes(cls, codes: list[str]) -> list[str]:
        bad = [c for c in codes if not (len(c) == 2 and c.isdigit())]
        if bad:
            raise ValueError(f"TCGA sample-type codes are two digits like '01', got {bad}")
        return codes

    @property
    def is_log_scale(self) -> bool:
        """The input is already on a log (or z-score) scale: no library size, no log1p."""
        return self.value_type in ("log", "zscore")

    @property
    def resolved_duplicate_rule(self) -> str:
        """``duplicate_rule`` with ``auto`` resolved by ``value_type``."""
        if self.duplicate_rule != "auto":
            return self.duplicate_rule
        return "mean" if self.is_log_scale else "sum"

    @property
    def resolved_hvg_method(self) -> str:
        """``hvg_method`` with ``auto`` resolved by ``value_type``."""
        if self.hvg_method != "auto":
            return self.hvg_method
        return {"log": "variance", "zscore": "none"}.get(self.value_type, "seurat")

    @field_validator("gene_map")
    @classmethod
    def _gene_map(cls, path: Path | None) -> Path | None:
        if path is None:
            return None
        if not path.name.lower().removesuffix(".gz").endswith((".csv", ".tsv", ".txt")):
            raise ValueError(f"gene map {path}: expected a .csv, .tsv or .txt file (two columns: "
                             "input ID, HGNC symbol)")
        if not path.exists():
            raise ValueError(f"gene map {path} does not exist (paths are relative to the "
                             "directory snakemake runs in)")
        return path

    @field_validator("gene_sets")
    @classmethod
    def _sources(cls, sources: list[str]) -> list[str]:
        if not sources:
            raise ValueError("at least one gene-set source is needed ('hallmark' or a file)")
        for src in sources:
            if src == "hallmark":
                continue
            suffix = Path(src).suffix.lower()
            if suffix not in {".gmt", ".csv", ".tsv", ".txt"}:
                raise ValueError(f"gene-set file {src}: expected .gmt, .csv, .tsv or .txt")
            if not Path(src).exists():
                raise ValueError(
                    f"gene-set file {src} does not exist (paths are relative to the directory "
                    "snakemake runs in)"
                )
        return sources

    @model_validator(mode="after")
    def _groups(self) -> RnaConfig:
        if not self.tumour_sets or not self.tme_sets:
            raise ValueError("tumour_sets and tme_sets each need at least one gene set")
        both = sorted(set(self.tumour_sets) & set(self.tme_sets))
        if both:
            raise ValueError(f"gene sets in both tumour_sets and tme_sets: {both}")
        if self.is_log_scale and self.duplicate_rule == "sum":
            raise ValueError(f"duplicate_rule 'sum' adds values, which is wrong for value_type "
                             f"{self.value_type!r} (a sum of logs is a product); use mean, "
                             "max_mean or auto")
        if self.is_log_scale and self.duplicate_genes == "sum":
            raise ValueError(f"duplicate_genes 'sum' adds repeated rows, which is wrong for "
                             f"value_type {self.value_type!r}; use error or first")
        if self.value_type == "zscore" and self.hvg_method in ("seurat", "variance"):
            raise ValueError(f"hvg_method {self.hvg_method!r} on z-scores ranks genes by a "
                             "variance that standardisation set to 1; use none or auto")
        return self
