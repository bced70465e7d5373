"""Processed RNA (log-scale, z-scores) and user gene maps, on real data: GSE7390 (scikit-survival)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from duopath.config import RnaConfig
from duopath.demo.gse7390 import write_gse7390
from duopath.rna import RnaError
from duopath.rna.build import build_rna
from duopath.rna.genes import load_user_gene_map


@pytest.fixture(scope="module")
def gse(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("gse7390")
    files = write_gse7390(root)
    matrix = pd.read_csv(files.expression, sep="\t", index_col=0)
    return {"root": root, "files": files, "matrix": matrix}


def _build(gse: dict, tmp_path: Path, *, expression: Path | None = None, **overrides):
    files = gse["files"]
    cfg = RnaConfig(**files.rna_settings(**overrides))
    return build_rna(expression or files.expression, files.sheet, cfg, tmp_path / "rna.h5ad",
                     summary=tmp_path / "summary.txt")


def test_log_values_with_probe_map_are_used_as_given(gse: dict, tmp_path: Path) -> None:
    matrix = gse["matrix"]
    # A platform-style map: two probes of one gene (averaged), a control probe without a symbol
    # (dropped), a probe hybridising to two genes (dropped: ambiguous).
    probes = matrix.index.tolist()
    rows = [(p, p.removeprefix("X")) for p in probes[3:]]
    rows += [(probes[0], "GENE_AB"), (probes[1], "GENE_AB"), (probes[2], "")]
    rows.append(("AFFX-CONTROL_at", "CTRL /// CTRL2"))
    gmap = tmp_path / "gpl.tsv"
    gmap.write_text("ID\tGene Symbol\n" + "".join(f"{a}\t{b}\n" for a, b in rows))
    genes = [b for _, b in rows if b and "///" not in b]
    gmt = tmp_path / "sets.gmt"
    gmt.write_text("T\tall\t" + "\t".join(genes) + "\nE\tall\t" + "\t".join(genes) + "\n")
    adata = _build(gse, tmp_path, gene_map=str(gmap), gene_sets=[str(gmt)], tumour_sets=["T"],
                   tme_sets=["E"])

    assert adata.n_obs == 198 and adata.n_vars == len(probes) - 2  # pair merged, control gone
    assert adata.uns["normalisation"]["transform"].startswith("none")
    assert adata.uns["genes"]["duplicate_rule"] == "mean"  # auto for log values
    assert adata.uns["hvg"]["method"] == "variance"
    patients = [f"{p}-A" for p in adata.obs_names]
    want = matrix.loc[probes[5], patients].to_numpy()
    np.testing.assert_allclose(np.asarray(adata[:, probes[5].removeprefix("X")].X).ravel(), want,
                               rtol=1e-6)  # no log1p, no library scaling
    pair = matrix.loc[[probes[0], probes[1]], patients].mean(axis=0).to_numpy()
    np.testing.assert_allclose(np.asarray(adata[:, "GENE_AB"].X).ravel(), pair, rtol=1e-6)
    assert adata.var.loc["GENE_AB", "n_collapsed"] == 2
    assert adata.obs["library_size"].isna().all()
    assert "symbols from rna.gene_map: 75" in (tmp_path / "summary.txt").read_text()


def test_log_values_declared_as_counts_warn(gse: dict, tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="duopath.rna.build"):
        _build(gse, tmp_path, value_type="counts", duplicate_rule="auto", hvg_method="auto")
    assert any("set rna.value_type: log" in r.message for r in caplog.records)


def test_zscores_are_used_as_given_and_every_gene_kept(gse: dict, tmp_path: Path) -> None:
    matrix = gse["matrix"]
    z = matrix.sub(matrix.mean(axis=1), axis=0).div(matrix.std(axis=1), axis=0)
    path = tmp_path / "z.tsv"
    z.to_csv(path, sep="\t")
    adata = _build(gse, tmp_path, expression=path, value_type="zscore")
    assert (np.asarray(adata.X) < 0).any()
    np.testing.assert_allclose(np.asarray(adata.X), z.T.loc[[f"{p}-A" for p in adata.obs_names],
                               [f"X{g}" for g in adata.var_names]].to_numpy(), rtol=1e-5, atol=1e-6)
    assert adata.var["highly_variable"].all() and adata.uns["hvg"]["method"] == "none"

    with pytest.raises(RnaError, match=r"negative value.*rna.value_type: zscore"):
        _build(gse, tmp_path, expression=path, value_type="tpm", duplicate_rule="auto",
               hvg_method="auto")


def test_settings_that_make_no_sense_on_processed_values_are_refused() -> None:
    with pytest.raises(ValueError, match="sum of logs"):
        RnaConfig(value_type="log", duplicate_rule="sum")
    with pytest.raises(ValueError, match="standardisation set to 1"):
        RnaConfig(value_type="zscore", hvg_method="seurat")
    assert RnaConfig(value_type="counts").resolved_duplicate_rule == "sum"
    assert RnaConfig(value_type="tpm").resolved_hvg_method == "seurat"


def test_probe_ids_without_a_map_fail_naming_them(gse: dict, tmp_path: Path) -> None:
    with pytest.raises(RnaError, match=r"76 of 76 input gene IDs \(100%\) are neither.*"
                                       r"X200726_at.*give rna\.gene_map"):
        _build(gse, tmp_path, gene_map=None)


def test_a_map_for_other_ids_fails_naming_both_sides(gse: dict, tmp_path: Path) -> None:
    gmap = tmp_path / "no_prefix.csv"  # GEO's probe IDs, without R's X: matches nothing
    gmap.write_text("ID,symbol\n" + "".join(f"{p.removeprefix('X')},G{i}\n"
                                            for i, p in enumerate(gse["matrix"].index)))
    with pytest.raises(RnaError, match=r"none of its 76 IDs \(e\.g\. 200726_at.*\) is a gene ID "
                                       r"of the RNA input \(e\.g\. X200726_at.*R's 'X'"):
        _build(gse, tmp_path, gene_map=str(gmap))


def test_a_map_covering_too_few_probes_fails(gse: dict, tmp_path: Path) -> None:
    gmap = tmp_path / "partial.tsv"
    gmap.write_text("ID\tsymbol\n" + "".join(f"{p}\tG{i}\n"
                                             for i, p in enumerate(gse["matrix"].index[:10])))
    with pytest.raises(RnaError, match=r"66 of 76 input gene IDs.*extend the one given"):
        _build(gse, tmp_path, gene_map=str(gmap))


def test_user_map_file_errors(tmp_path: Path) -> None:
    one = tmp_path / "one.tsv"
    one.write_text("ID,symbol\nA,B\n")  # commas in a .tsv: one column
    with pytest.raises(RnaError, match=r"needs two columns.*a TSV needs tabs"):
        load_user_gene_map(one)
    clash = tmp_path / "clash.tsv"
    clash.write_text("ID\tsymbol\np1\tTP53\np2\tEGFR\np1\tMDM2\n")
    with pytest.raises(RnaError, match=r"ID p1 maps to 'TP53' \(line 2\) and to 'MDM2' \(line 4\)"):
        load_user_gene_map(clash)
    with pytest.raises(ValueError, match="does not exist"):
        RnaConfig(gene_map=str(tmp_path / "missing.tsv"))


def test_ensembl_ids_with_and_without_version_and_a_map_of_ensembl(tmp_path: Path) -> None:
    from duopath.rna.genes import harmonise_genes, load_gene_map

    feats = pd.DataFrame({"label": ["ENSG00000141510.17", "ENSG00000146648", "MYC", "ENSG00000999999.1"]})
    values = np.arange(8, dtype=float).reshape(2, 4) + 1
    _, var, report = harmonise_genes(
        values, feats, gene_map=load_gene_map(), protein_coding_only=False, duplicate_rule="sum",
        user_map={"ENSG00000999999.1": "MY_GENE"}, known_symbols={"MYC"}, min_recognised=1.0)
    assert list(var.index) == ["EGFR", "MYC", "MY_GENE", "TP53"]
    assert var.loc["TP53", "ensembl_id"] == "ENSG00000141510"
    assert report.n_user_mapped == 1 and not report.unrecognised
