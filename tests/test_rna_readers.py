"""RNA readers on small fixture files written here in the real formats."""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from duopath.rna import RnaError
from duopath.rna.readers import (
    detect_orientation,
    read_gdc_folder,
    read_gdc_sample_sheet,
    read_rna,
    read_star_counts,
)

STAR_COLUMNS = [
    "gene_id", "gene_name", "gene_type", "unstranded", "stranded_first", "stranded_second",
    "tpm_unstranded", "fpkm_unstranded", "fpkm_uq_unstranded",
]
# Real GENCODE v36 rows (IDs, names, types), a _PAR_Y copy and a lncRNA.
GENES = [
    ("ENSG00000000003.15", "TSPAN6", "protein_coding"),
    ("ENSG00000000005.6", "TNMD", "protein_coding"),
    ("ENSG00000000419.13", "DPM1", "protein_coding"),
    ("ENSG00000000457.14", "SCYL3", "protein_coding"),
    ("ENSG00000182378.14_PAR_Y", "PLCXD1", "protein_coding"),
    ("ENSG00000230699.2", "AL360012.1", "lncRNA"),
]


def write_star(path: Path, counts: list[int], lengths_kb: float = 2.0) -> None:
    """A GDC ``augmented_star_gene_counts`` TSV: comment line, header, N_* rows, genes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    c = np.asarray(counts, dtype=float)
    rate = c / lengths_kb
    tpm = rate / rate.sum() * 1e6
    fpkm = c / lengths_kb / c.sum() * 1e6
    lines = ["# gene-model: GENCODE v36", "\t".join(STAR_COLUMNS)]
    for name, n in (("N_unmapped", 2370578), ("N_multimapping", 4785358),
                    ("N_noFeature", 3291232), ("N_ambiguous", 2196420)):
        lines.append(f"{name}\t\t\t{n}\t{n}\t{n}\t\t\t")
    for (gid, name, gtype), k, t, f in zip(GENES, counts, tpm, fpkm, strict=True):
        lines.append(f"{gid}\t{name}\t{gtype}\t{k}\t{k // 2}\t{k - k // 2}\t{t:.4f}\t{f:.4f}\t"
                     f"{f * 1.5:.4f}")
    path.write_text("\n".join(lines) + "\n")


def write_gdc_sheet(path: Path, rows: list[tuple[str, str, str, str]]) -> None:
    """GDC portal sample sheet: (file name, case, sample, sample type) per row."""
    header = ["File ID", "File Name", "Data Category", "Data Type", "Project ID", "Case ID",
              "Sample ID", "Sample Type"]
    lines = ["\t".join(header)]
    for i, (fname, case, sample, stype) in enumerate(rows):
        lines.append("\t".join([f"uuid-{i}", fname, "Transcriptome Profiling",
                                "Gene Expression Quantification", "TCGA-BRCA", case, sample,
                                stype]))
    path.write_text("\n".join(lines) + "\n")


def gdc_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "gdc"
    files = {
        "a1.rna_seq.augmented_star_gene_counts.tsv": [10, 0, 30, 5, 0, 7],
        "b2.rna_seq.augmented_star_gene_counts.tsv": [1, 2, 3, 4, 0, 6],
        "c3.rna_seq.augmented_star_gene_counts.tsv": [9, 9, 9, 9, 0, 9],
    }
    for i, (name, counts) in enumerate(files.items()):
        write_star(folder / f"uuid-{i}" / name, counts)
    write_gdc_sheet(folder / "gdc_sample_sheet.2024-05-01.tsv", [
        ("a1.rna_seq.augmented_star_gene_counts.tsv", "TCGA-A2-A0CM", "TCGA-A2-A0CM-01A",
         "Primary Tumor"),
        ("b2.rna_seq.augmented_star_gene_counts.tsv", "TCGA-A2-A0CM", "TCGA-A2-A0CM-11A",
         "Solid Tissue Normal"),
        ("c3.rna_seq.augmented_star_gene_counts.tsv", "TCGA-BH-A0B3", "TCGA-BH-A0B3-01A",
         "Primary Tumor"),
    ])
    return folder


def test_star_file_drops_summary_rows_and_reads_the_chosen_column(tmp_path: Path) -> None:
    path = tmp_path / "x.rna_seq.augmented_star_gene_counts.tsv"
    write_star(path, [10, 0, 30, 5, 0, 7])
    feats, counts = read_star_counts(path, value_type="counts")
    assert feats["label"].tolist() == [g[0] for g in GENES]
    assert not feats["label"].str.startswith("N_").any()
    assert counts.tolist() == [10, 0, 30, 5, 0, 7]
    _, tpm = read_star_counts(path, value_type="tpm")
    assert tpm.sum() == pytest.approx(1e6, rel=1e-6)
    _, fpkm_uq = read_star_counts(path, value_type="fpkm_uq")
    assert not np.allclose(fpkm_uq, tpm)


def test_gdc_folder_with_sample_sheet(tmp_path: Path) -> None:
    folder = gdc_folder(tmp_path)
    raw = read_rna(folder, value_type="counts")
    assert raw.fmt == "gdc_star"
    assert raw.sample_ids == ["TCGA-A2-A0CM-01A", "TCGA-A2-A0CM-11A", "TCGA-BH-A0B3-01A"]
    np.testing.assert_array_equal(raw.values[1], [1, 2, 3, 4, 0, 6])
    meta = raw.sample_meta
    assert meta.loc["TCGA-A2-A0CM-11A", "patient"] == "TCGA-A2-A0CM"
    assert meta.loc["TCGA-A2-A0CM-11A", "sample_type"] == "11"
    assert meta.loc["TCGA-A2-A0CM-01A", "file"].endswith("a1.rna_seq.augmented_star_gene_counts.tsv")
    assert "uuid-0" in meta.loc["TCGA-A2-A0CM-01A", "aliases"]
    # The sample sheet itself is accepted as the source too.
    again = read_rna(next(folder.glob("gdc_sample_sheet*.tsv")), value_type="counts")
    np.testing.assert_array_equal(again.values, raw.values)


def test_gdc_folder_reports_missing_and_extra_files(tmp_path: Path, caplog) -> None:
    folder = gdc_folder(tmp_path)
    write_star(folder / "stray" / "zz.rna_seq.augmented_star_gene_counts.tsv", [1] * 6)
    (folder / "uuid-2" / "c3.rna_seq.augmented_star_gene_counts.tsv").unlink()
    with caplog.at_level(logging.WARNING):
        raw = read_gdc_folder(folder, value_type="counts")
    assert "TCGA-BH-A0B3-01A" not in raw.sample_ids
    assert "not under" in caplog.text and "c3.rna_seq" in caplog.text
    assert "zz.rna_seq" in caplog.text and "ignored" in caplog.text


def test_gdc_duplicate_sample_keeps_larger_library(tmp_path: Path, caplog) -> None:
    folder = tmp_path / "gdc"
    write_star(folder / "u1" / "small.rna_seq.augmented_star_gene_counts.tsv", [1] * 6)
    write_star(folder / "u2" / "big.rna_seq.augmented_star_gene_counts.tsv", [50] * 6)
    write_gdc_sheet(folder / "gdc_sample_sheet.tsv", [
        ("small.rna_seq.augmented_star_gene_counts.tsv", "TCGA-A2-A0CM", "TCGA-A2-A0CM-01A",
         "Primary Tumor"),
        ("big.rna_seq.augmented_star_gene_counts.tsv", "TCGA-A2-A0CM", "TCGA-A2-A0CM-01A",
         "Primary Tumor"),
    ])
    with caplog.at_level(logging.WARNING):
        raw = read_rna(folder, value_type="counts")
    assert raw.sample_ids == ["TCGA-A2-A0CM-01A"]
    assert raw.values.sum() == 300
    assert "small.rna_seq" in caplog.text


def test_gdc_errors_name_the_file(tmp_path: Path) -> None:
    folder = gdc_folder(tmp_path)
    sheet = next(folder.glob("gdc_sample_sheet*.tsv"))
    sheet.write_text(sheet.read_text().replace("Sample ID", "Sample"))
    with pytest.raises(RnaError, match=r"gdc_sample_sheet.*Sample ID"):
        read_gdc_sample_sheet(sheet)
    with pytest.raises(RnaError, match=r"lacks column\(s\) \['Sample ID'\]"):
        read_rna(folder, value_type="counts")  # found by its name, then validated
    sheet.unlink()
    with pytest.raises(RnaError, match="expected exactly one GDC sample sheet"):
        read_rna(folder, value_type="counts")
    single = next(folder.rglob("a1.rna_seq.augmented_star_gene_counts.tsv"))
    with pytest.raises(RnaError, match="single GDC STAR counts file"):
        read_rna(single, value_type="counts")
    old = tmp_path / "old" / "y.rna_seq.augmented_star_gene_counts.tsv"
    write_star(old, [1, 2, 3, 4, 5, 6])
    old.write_text(old.read_text().replace("fpkm_uq_unstranded", "fpkm_uq"))
    with pytest.raises(RnaError, match=r"y\.rna_seq.*\['fpkm_uq_unstranded'\] missing.*"
                                       r"value_type='fpkm_uq'"):
        read_star_counts(old, value_type="fpkm_uq")
    bad = tmp_path / "bad" / "x.rna_seq.augmented_star_gene_counts.tsv"
    write_star(bad, [1, 2, 3, 4, 5, 6])
    bad.write_text(bad.read_text().replace("\t3\t1\t2\t", "\tthree\t1\t2\t"))
    with pytest.raises(RnaError, match=r"x\.rna_seq.*'three'.*ENSG00000000419\.13 \(line 9\)"):
        read_star_counts(bad, value_type="counts")


def _demo_like_matrix(n_genes: int = 6, n_samples: int = 4) -> pd.DataFrame:
    genes = ["TSPAN6", "TNMD", "DPM1", "SCYL3", "CD8A", "MKI67"][:n_genes]
    rng = np.random.default_rng(3)
    values = rng.integers(0, 100, size=(n_genes, n_samples))
    return pd.DataFrame(values, index=pd.Index(genes, name="gene"),
                        columns=[f"DEMO-S1-{i:04d}-R" for i in range(n_samples)])


def test_matrix_both_orientations_and_formats_agree(tmp_path: Path, caplog) -> None:
    gxs = _demo_like_matrix()
    gxs.to_csv(tmp_path / "rna_counts.tsv", sep="\t")  # the demo's format
    gxs.T.rename_axis("sample").to_csv(tmp_path / "sxg.csv")
    gxs.to_parquet(tmp_path / "gxs.parquet")  # index stored by pandas
    gxs.T.reset_index(names="sample").to_parquet(tmp_path / "sxg.parquet", index=False)
    results = {}
    with caplog.at_level(logging.INFO):
        for name in ("rna_counts.tsv", "sxg.csv", "gxs.parquet", "sxg.parquet"):
            results[name] = read_rna(tmp_path / name, value_type="counts")
    assert "rna_counts.tsv: read as genes × samples" in caplog.text
    assert "sxg.csv: read as samples × genes" in caplog.text
    for raw in results.values():
        assert raw.sample_ids == list(gxs.columns)
        assert raw.features["label"].tolist() == list(gxs.index)
        np.testing.assert_array_equal(raw.values, gxs.T.to_numpy())
    assert results["sxg.parquet"].orientation.startswith("samples × genes")


def test_matrix_orientation_from_sheet_ids_when_genes_are_unknown() -> None:
    rows = ["G1", "G2", "G3"]
    cols = ["P1", "P2", "P3", "P4"]
    assert detect_orientation(rows, cols, {"P1", "P2", "P3", "P4"}, set())[0] is True
    assert detect_orientation(cols, rows, {"P1", "P2", "P3", "P4"}, set())[0] is False
    # No clue at all: the longer axis is genes.
    assert detect_orientation(["a", "b", "c", "d", "e"], ["x", "y"], set(), set())[0] is True


def test_matrix_annotation_columns_feed_gene_mapping(tmp_path: Path) -> None:
    table = pd.DataFrame({
        "gene_id": ["ENSG00000000003.15", "ENSG00000000005.6"],
        "gene_name": ["TSPAN6", "TNMD"],
        "gene_type": ["protein_coding", "protein_coding"],
        "S1": [4, 5], "S2": [6, 7],
    })
    table.to_csv(tmp_path / "m.tsv", sep="\t", index=False)
    raw = read_rna(tmp_path / "m.tsv", value_type="counts", sample_hints={"S1", "S2"})
    assert raw.sample_ids == ["S1", "S2"]
    assert raw.features["gene_name"].tolist() == ["TSPAN6", "TNMD"]
    assert raw.features["gene_type"].tolist() == ["protein_coding"] * 2


@pytest.mark.parametrize(
    ("cell", "pattern"),
    [
        ("abc", r"m\.tsv: non-numeric value 'abc' for sample DEMO-S1-0001-R, gene DPM1 \(line 4\)"),
        ("-3", r"m\.tsv: sample DEMO-S1-0001-R, gene DPM1 has a negative value"),
        ("", r"m\.tsv: missing value for sample DEMO-S1-0001-R, gene DPM1"),
    ],
)
def test_matrix_bad_values_name_file_sample_gene(tmp_path: Path, cell: str, pattern: str) -> None:
    gxs = _demo_like_matrix().astype(object)
    gxs.iloc[2, 1] = cell
    gxs.to_csv(tmp_path / "m.tsv", sep="\t")
    with pytest.raises(RnaError, match=pattern):
        read_rna(tmp_path / "m.tsv", value_type="counts")


def test_matrix_duplicated_sample_ids(tmp_path: Path) -> None:
    gxs = _demo_like_matrix()
    text = gxs.to_csv(sep="\t").replace("DEMO-S1-0002-R", "DEMO-S1-0001-R")
    (tmp_path / "m.tsv").write_text(text)
    with pytest.raises(RnaError, match=r"m\.tsv: duplicated sample \(column\) IDs: DEMO-S1-0001-R"):
        read_rna(tmp_path / "m.tsv", value_type="counts")
    sxg = gxs.T.rename(index={"DEMO-S1-0003-R": "DEMO-S1-0000-R"}).rename_axis("sample")
    sxg.to_csv(tmp_path / "s.csv")
    with pytest.raises(RnaError, match=r"duplicated sample \(row\) IDs: DEMO-S1-0000-R"):
        read_rna(tmp_path / "s.csv", value_type="counts")


def test_h5ad_reader_prefers_counts_layer_and_transposes(tmp_path: Path) -> None:
    gxs = _demo_like_matrix()
    adata = ad.AnnData(X=np.log1p(gxs.T.to_numpy()).astype(np.float32),
                       obs=pd.DataFrame(index=gxs.columns), var=pd.DataFrame(index=gxs.index))
    adata.layers["counts"] = gxs.T.to_numpy()
    adata.var["gene_ids"] = ["ENSG00000000003", "ENSG00000000005", "", "", "", ""]
    adata.write_h5ad(tmp_path / "a.h5ad")
    raw = read_rna(tmp_path / "a.h5ad", value_type="counts")
    assert raw.fmt == "h5ad"
    np.testing.assert_array_equal(raw.values, gxs.T.to_numpy())
    assert raw.features["gene_id"].iat[0] == "ENSG00000000003"
    tpm = read_rna(tmp_path / "a.h5ad", value_type="tpm")  # not counts: X as stored
    np.testing.assert_allclose(tpm.values, np.log1p(gxs.T.to_numpy()), rtol=1e-6)

    flipped = ad.AnnData(X=gxs.to_numpy().astype(np.float32), obs=pd.DataFrame(index=gxs.index),
                         var=pd.DataFrame(index=gxs.columns))
    flipped.write_h5ad(tmp_path / "f.h5ad")
    raw_f = read_rna(tmp_path / "f.h5ad", value_type="counts", gene_symbols=set(gxs.index))
    assert raw_f.sample_ids == list(gxs.columns)
    np.testing.assert_array_equal(raw_f.values, gxs.T.to_numpy())
    assert "transposed" in raw_f.orientation


def test_missing_input_names_path(tmp_path: Path) -> None:
    with pytest.raises(RnaError, match=r"nope\.tsv does not exist"):
        read_rna(tmp_path / "nope.tsv", value_type="counts")
