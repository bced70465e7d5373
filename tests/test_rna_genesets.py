"""Gene-set files (GMT, CSV/TSV forms), the packaged Hallmarks, and the T/E groups."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from duopath.config import RnaConfig
from duopath.rna import RnaError
from duopath.rna.genesets import (
    GeneSet,
    build_groups,
    load_gene_sets,
    read_gene_table,
    read_gmt,
)


def test_gmt_with_crlf_and_description(tmp_path: Path) -> None:
    # ESTIMATE's SI_geneset.gmt ships with CRLF line endings.
    path = tmp_path / "si.gmt"
    path.write_bytes(b"StromalSignature\testimate\tDCN\tPAPPA\tSFRP4\r\n"
                     b"ImmuneSignature\testimate\tLCP2\tLSP1\tFYB\tDCN\r\n\r\n")
    sets = read_gmt(path)
    assert [s.name for s in sets] == ["StromalSignature", "ImmuneSignature"]
    assert sets[0].genes == ("DCN", "PAPPA", "SFRP4")
    assert sets[1].source == "si.gmt"


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("SET_A DCN PAPPA\n", r"line 1: a GMT line is name<TAB>description"),
        ("SET_A\tdesc\tDCN\nSET_A\tdesc\tPAPPA\n", r"line 2: gene set SET_A appears twice"),
        ("SET_A\tdesc\t\t\n", r"gene set SET_A lists no gene"),
    ],
)
def test_bad_gmt(tmp_path: Path, text: str, pattern: str) -> None:
    path = tmp_path / "bad.gmt"
    path.write_text(text)
    with pytest.raises(RnaError, match=pattern):
        read_gmt(path)


def test_packaged_hallmarks_and_default_groups_exist() -> None:
    sets = {s.name: s for s in load_gene_sets(["hallmark"])}
    assert len(sets) == 50
    cfg = RnaConfig()
    for name in cfg.tumour_sets + cfg.tme_sets:
        assert name in sets, name
    assert "MKI67" in sets["HALLMARK_G2M_CHECKPOINT"].genes


def test_table_forms(tmp_path: Path) -> None:
    # MCAT/SurvPath "signatures.csv": one column of genes per set, padded with empty cells.
    (tmp_path / "lists.csv").write_text("Oncogenes,Cytokines\nMYC,IL6\nERBB2,\nKRAS,TNF\n")
    sets = {s.name: s.genes for s in read_gene_table(tmp_path / "lists.csv")}
    assert sets == {"Oncogenes": ("MYC", "ERBB2", "KRAS"), "Cytokines": ("IL6", "TNF")}
    # SurvPath "comps": gene column then 0/1 membership.
    (tmp_path / "comps.csv").write_text("gene,P1,P2\nMYC,1,0\nIL6,0,1\nTNF,1,1\n")
    sets = {s.name: s.genes for s in read_gene_table(tmp_path / "comps.csv")}
    assert sets == {"P1": ("MYC", "TNF"), "P2": ("IL6", "TNF")}
    # CIBERSORT LM22-like signature matrix: each gene to its highest column.
    (tmp_path / "lm.txt").write_text(
        "Gene symbol\tB cells\tT cells CD8\nCD19\t900.5\t3.1\nCD8A\t2.0\t450.2\nMS4A1\t300\t1\n")
    sets = {s.name: s.genes for s in read_gene_table(tmp_path / "lm.txt")}
    assert sets == {"B cells": ("CD19", "MS4A1"), "T cells CD8": ("CD8A",)}


def test_set_defined_twice_across_sources(tmp_path: Path) -> None:
    (tmp_path / "mine.gmt").write_text("HALLMARK_E2F_TARGETS\tx\tMKI67\n")
    with pytest.raises(RnaError, match=r"HALLMARK_E2F_TARGETS is defined in both hallmark and"):
        load_gene_sets(["hallmark", str(tmp_path / "mine.gmt")])


def test_config_rejects_missing_gene_set_file_and_overlapping_groups(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="does not exist"):
        RnaConfig(gene_sets=[str(tmp_path / "nope.gmt")])
    with pytest.raises(ValidationError, match="both tumour_sets and tme_sets"):
        RnaConfig(tumour_sets=["A", "B"], tme_sets=["B"])
    with pytest.raises(ValidationError, match="two digits"):
        RnaConfig(sample_type_preference=["1"])


SETS = [
    GeneSet("T1", ("MKI67", "TOP2A", "CCNB1", "SHARED"), "t.gmt"),
    GeneSet("E1", ("CD8A", "GZMB", "PRF1", "SHARED"), "t.gmt"),
    GeneSet("SMALL", ("CD8A", "NOTHERE"), "t.gmt"),
]
PRESENT = pd.Index(["MKI67", "TOP2A", "CCNB1", "SHARED", "CD8A", "GZMB", "PRF1", "ACTB"])


@pytest.mark.parametrize(
    ("overlap", "in_t", "in_e"),
    [("drop", False, False), ("both", True, True), ("tumour", True, False), ("tme", False, True)],
)
def test_group_overlap_rules(overlap: str, in_t: bool, in_e: bool) -> None:
    g = build_groups(SETS, PRESENT, tumour_sets=["T1"], tme_sets=["E1"], overlap=overlap,
                     min_set_genes=2)
    assert ("SHARED" in g.tumour) is in_t
    assert ("SHARED" in g.tme) is in_e
    assert g.overlap == ["SHARED"]
    assert {"MKI67", "TOP2A", "CCNB1"} <= set(g.tumour)
    table = g.table.set_index("name")
    assert table.loc["SMALL", "n_present"] == 1 and not table.loc["SMALL", "scored"]
    assert table.loc["T1", "group"] == "T" and table.loc["E1", "group"] == "E"


def test_group_errors() -> None:
    e2f = GeneSet("HALLMARK_E2F_TARGETS", ("MKI67",), "t.gmt")
    with pytest.raises(RnaError, match=r"rna.tumour_sets: gene set HALLMARK_E2F_TARGET is in "
                       r"none .*did you mean HALLMARK_E2F_TARGETS"):
        build_groups([*SETS, e2f], PRESENT, tumour_sets=["HALLMARK_E2F_TARGET"],
                     tme_sets=["E1"], overlap="drop", min_set_genes=2)
    with pytest.raises(RnaError, match=r"gene-set source mouse.gmt: none of its 2 genes"):
        build_groups([*SETS, GeneSet("M", ("Cd8a", "Gzmb"), "mouse.gmt")], PRESENT,
                     tumour_sets=["T1"], tme_sets=["E1"], overlap="drop", min_set_genes=2)
    with pytest.raises(RnaError, match=r"TME \(E\) gene group is empty.*highly variable"):
        build_groups(SETS, PRESENT, tumour_sets=["T1"], tme_sets=["E1"], overlap="drop",
                     min_set_genes=2, hvg=pd.Index(["MKI67"]))
