"""Gene identifiers: Ensembl version stripping, Ensembl ↔ HGNC, duplicates, protein-coding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from duopath.rna import RnaError
from duopath.rna.genes import (
    gene_map_from_table,
    harmonise_genes,
    is_ensembl,
    load_gene_map,
    strip_version,
)


@pytest.mark.parametrize(
    ("raw", "stripped"),
    [
        ("ENSG00000186092.6", "ENSG00000186092"),
        ("ENSG00000186092", "ENSG00000186092"),
        (" ENSG00000141510.17 ", "ENSG00000141510"),
        ("ENSG00000182378.14_PAR_Y", "ENSG00000182378_PAR_Y"),
        ("ENSMUSG00000064370.1", "ENSMUSG00000064370"),
        ("TP53", "TP53"),
        ("N_unmapped", "N_unmapped"),
    ],
)
def test_strip_version(raw: str, stripped: str) -> None:
    assert strip_version(raw) == stripped


def test_is_ensembl() -> None:
    assert is_ensembl("ENSG00000141510.17")
    assert not is_ensembl("TP53")
    assert not is_ensembl("ENSG")


def test_packaged_gencode_map() -> None:
    gm = load_gene_map()
    assert gm.ensembl_to_symbol["ENSG00000141510"] == "TP53"
    assert gm.symbol_to_ensembl["TP53"] == "ENSG00000141510"
    assert gm.ensembl_to_symbol["ENSG00000182378"] == "PLCXD1"  # the X copy, not _PAR_Y
    assert not any(k.endswith("_PAR_Y") for k in gm.ensembl_to_symbol)
    assert len(gm.ensembl_to_symbol) > 19000


def _map():
    return gene_map_from_table(pd.DataFrame({
        "gene_id": ["ENSG00000000003.14", "ENSG00000000005.5", "ENSG00000141510.16",
                    "ENSG00000111111.1", "ENSG00000111111.1_PAR_Y"],
        "symbol": ["TSPAN6", "TNMD", "TP53", "DUPL", "DUPL"],
    }), source="test map")


def _harmonise(values, features, **kw):
    opts = {"gene_map": _map(), "protein_coding_only": False, "duplicate_rule": "sum"} | kw
    return harmonise_genes(np.asarray(values, dtype=float), pd.DataFrame(features), **opts)


def test_versioned_ensembl_ids_map_to_symbols_and_unmapped_are_reported() -> None:
    features = {"label": ["ENSG00000141510.17", "ENSG00000000003.15", "ENSG00000999999.1",
                          "ENSG00000111111.2_PAR_Y"]}
    out, var, report = _harmonise([[1, 2, 3, 4], [5, 6, 7, 8]], features)
    assert var.index.tolist() == ["TP53", "TSPAN6"]  # sorted by symbol
    assert var["ensembl_id"].tolist() == ["ENSG00000141510", "ENSG00000000003"]
    np.testing.assert_array_equal(out, [[1, 2], [5, 6]])
    assert report.unmapped == ["ENSG00000999999.1"]
    assert report.n_par_y == 1
    assert report.mapped_fraction == pytest.approx(2 / 3)


def test_symbols_get_ensembl_ids_from_the_map() -> None:
    _, var, _ = _harmonise([[1, 2, 3]], {"label": ["TNMD", "TP53", "NOVEL1"]})
    assert var.loc["TP53", "ensembl_id"] == "ENSG00000141510"
    assert var.loc["NOVEL1", "ensembl_id"] == ""  # kept under its symbol, ID unknown


def test_input_annotation_wins_over_the_map() -> None:
    features = {"label": ["ENSG00000141510.17"], "gene_id": ["ENSG00000141510.17"],
                "gene_name": ["TP53-NEWNAME"], "gene_type": ["protein_coding"]}
    _, var, _ = _harmonise([[3]], features)
    assert var.index.tolist() == ["TP53-NEWNAME"]


def test_duplicate_symbols_sum_or_max_mean() -> None:
    features = {"label": ["ENSG00000000003.1", "ENSG00000000004.1", "TP53"],
                "gene_name": ["SAME", "SAME", ""]}
    values = [[1, 10, 7], [3, 20, 8]]
    out, var, report = _harmonise(values, features)
    assert var.index.tolist() == ["SAME", "TP53"]
    np.testing.assert_array_equal(out[:, 0], [11, 23])
    assert var.loc["SAME", "n_collapsed"] == 2
    assert var.loc["SAME", "ensembl_id"] == "ENSG00000000004"  # the most expressed member
    assert report.n_duplicate_rows == 2
    out_max, _, _ = _harmonise(values, features, duplicate_rule="max_mean")
    np.testing.assert_array_equal(out_max[:, 0], [10, 20])


def test_shuffled_gene_rows_give_identical_output() -> None:
    rng = np.random.default_rng(0)
    labels = ["TP53", "TNMD", "TSPAN6", "DUP", "DUP", "ENSG00000141510.3", "X1"]
    values = rng.integers(0, 50, size=(3, len(labels))).astype(float)
    ref = _harmonise(values, {"label": labels})
    perm = rng.permutation(len(labels))
    got = _harmonise(values[:, perm], {"label": [labels[i] for i in perm]})
    np.testing.assert_array_equal(ref[0], got[0])
    pd.testing.assert_frame_equal(ref[1], got[1])


def test_protein_coding_from_gene_type_or_map() -> None:
    features = {"label": ["A", "B", "C"], "gene_type": ["protein_coding", "lncRNA", ""],
                "gene_name": ["TP53", "LINC1", "TNMD"]}
    _, var, report = _harmonise([[1, 2, 3]], features, protein_coding_only=True)
    # B is lncRNA by its own annotation; C has no type but is in the (protein-coding) map.
    assert var.index.tolist() == ["TNMD", "TP53"]
    assert report.n_not_protein_coding == 1
    _, var2, _ = _harmonise([[1, 2]], {"label": ["TP53", "NOTINMAP"]}, protein_coding_only=True)
    assert var2.index.tolist() == ["TP53"]


def test_nothing_mapped_is_an_error() -> None:
    with pytest.raises(RnaError, match=r"no gene is left.*ENSG00000999999"):
        _harmonise([[1]], {"label": ["ENSG00000999999.1"]})
