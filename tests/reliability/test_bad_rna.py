"""Bad RNA inputs, each met with an error naming the file and what is wrong (README table):
missing or negative values, a gene listed twice (``rna.duplicate_genes``), a matrix whose
samples match no patient, and a matrix with a header but no rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_rna_build import planted_cohort

from duopath.config import RnaConfig
from duopath.rna import RnaError
from duopath.rna.build import build_rna
from duopath.rna.genes import collapse_repeated_genes


@pytest.fixture
def cohort(tmp_path: Path) -> dict:
    planted = planted_cohort(tmp_path, n=8)
    return {"dir": tmp_path, "matrix": planted["matrix"], "sheet": tmp_path / "samples.csv"}


def _build(cohort: dict, matrix: pd.DataFrame, settings: RnaConfig | None = None):
    path = cohort["dir"] / "bad_counts.tsv"
    path.write_text(matrix.to_csv(sep="\t"))
    return build_rna(path, cohort["sheet"], settings or RnaConfig(), cohort["dir"] / "out.h5ad")


def test_missing_value_names_sample_and_gene(cohort: dict) -> None:
    matrix = cohort["matrix"].astype(float)
    gene, sample = matrix.index[3], matrix.columns[2]
    matrix.loc[gene, sample] = np.nan
    with pytest.raises(RnaError, match=rf"bad_counts\.tsv: missing value for sample {sample}, gene {gene}"):
        _build(cohort, matrix)


def test_negative_value_names_sample_and_gene(cohort: dict) -> None:
    matrix = cohort["matrix"].copy()
    gene, sample = matrix.index[5], matrix.columns[1]
    matrix.loc[gene, sample] = -4
    with pytest.raises(RnaError, match=rf"sample {sample}, gene {gene} has a negative value"):
        _build(cohort, matrix)


def test_gene_listed_twice_is_an_error_naming_it(cohort: dict) -> None:
    """Summed with only an INFO line before: a merge mistake silently doubled a gene."""
    matrix = cohort["matrix"]
    twice = pd.concat([matrix, matrix.iloc[[7]]])
    with pytest.raises(RnaError, match=rf"1 gene\(s\) are listed on more than one row: {matrix.index[7]}\b"
                       r".*rna\.duplicate_genes"):
        _build(cohort, twice)
    # the explicit choices build, and say what they did with the gene
    summed = _build(cohort, twice, RnaConfig(duplicate_genes="sum"))
    first = _build(cohort, twice, RnaConfig(duplicate_genes="first"))
    gene = matrix.index[7]
    np.testing.assert_array_equal(summed[:, gene].layers["counts"].ravel(),
                                  2 * first[:, gene].layers["counts"].ravel())


def test_repeated_gene_rules_on_ensembl_versions() -> None:
    """ENSG…1.5 and ENSG…1.6 are one gene; distinct IDs sharing a symbol are not repeats."""
    values = np.array([[1.0, 2.0, 3.0, 4.0]])
    features = pd.DataFrame({"label": ["ENSG00000000001.5", "ENSG00000000001.6",
                                       "ENSG00000000002.1", "ENSG00000000003.1"],
                             "gene_name": ["A", "A", "B", "B"]})
    with pytest.raises(RnaError, match="ENSG00000000001"):
        collapse_repeated_genes(values, features, rule="error", source="m.tsv")
    out, kept = collapse_repeated_genes(values, features, rule="sum", source="m.tsv")
    assert out.tolist() == [[3.0, 3.0, 4.0]] and kept["gene_name"].tolist() == ["A", "B", "B"]
    out, _ = collapse_repeated_genes(values, features, rule="first", source="m.tsv")
    assert out.tolist() == [[1.0, 3.0, 4.0]]


def test_no_sample_matches_a_patient(cohort: dict) -> None:
    matrix = cohort["matrix"].rename(columns=lambda c: f"OTHER-{c}")
    with pytest.raises(RnaError, match=r"none of the \d+ RNA samples of .*bad_counts\.tsv matches a "
                       "patient of the sample sheet"):
        _build(cohort, matrix)


def test_header_only_matrix_says_it_has_no_rows(cohort: dict) -> None:
    with pytest.raises(RnaError, match="has a header but no rows"):
        _build(cohort, cohort["matrix"].iloc[:0])
