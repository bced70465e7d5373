"""End to end: matrix + sheet → h5ad contract, ID join, scaler, scores, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from duopath.config import RnaConfig
from duopath.rna import RnaError
from duopath.rna.build import build_rna
from duopath.rna.genes import load_gene_map
from duopath.rna.genesets import load_gene_sets
from duopath.rna.join import join_samples
from duopath.rna.normalise import ScalerLeakError, apply_scaler, fit_scaler
from duopath.rna.scores import rank_scores

N_PATIENTS = 24


def planted_cohort(tmp_path: Path, n: int = N_PATIENTS, seed: int = 0) -> dict:
    """Counts (demo format) driven by hidden tumour (t) and TME (e) factors, and a sheet.

    T-group genes go up with t, E-group genes with e, so correct grouping + scoring must
    recover both factors. Patient 0 has no RNA (empty rna_sample_id) and patient 1 two slides.
    """
    rng = np.random.default_rng(seed)
    cfg = RnaConfig()
    sets = {s.name: s.genes for s in load_gene_sets(["hallmark"])}
    t_all = {g for name in cfg.tumour_sets for g in sets[name]}
    e_all = {g for name in cfg.tme_sets for g in sets[name]}
    t_genes = sorted(t_all - e_all)[:60]
    e_genes = sorted(e_all - t_all)[:60]
    other = sorted({g for s in sets.values() for g in s} - t_all - e_all)[:180]
    genes = t_genes + e_genes + other
    patients = [f"P{i:03d}" for i in range(n)]
    t, e = rng.standard_normal(n), rng.standard_normal(n)
    base = rng.gamma(2.0, 40.0, size=len(genes))
    effect = np.zeros((n, len(genes)))
    effect[:, : len(t_genes)] = 0.9 * t[:, None]
    effect[:, len(t_genes): len(t_genes) + len(e_genes)] = 0.9 * e[:, None]
    depth = rng.uniform(0.5, 2.0, size=n)[:, None]
    counts = rng.poisson(base * np.exp(effect) * depth)
    samples = [f"{p}-R" for p in patients]
    matrix = pd.DataFrame(counts.T, index=pd.Index(genes, name="gene"), columns=samples)
    matrix = matrix.drop(columns=samples[0])  # patient 0: no RNA
    times = rng.uniform(1, 100, size=n).round(2)
    events = rng.integers(0, 2, size=n)
    rows = []
    for i, p in enumerate(patients):
        for k in range(2 if i == 1 else 1):
            rows.append({"patient_id": p, "slide_id": f"{p}-{k + 1:02d}", "slide_path": "x.tiff",
                         "rna_sample_id": "" if i == 0 else samples[i],
                         "site": f"S{i % 3 + 1}", "label": "high" if t[i] > 0 else "low",
                         "time": float(times[i]), "event": int(events[i]), "mpp": ""})
    sheet = pd.DataFrame(rows)
    (tmp_path / "rna_counts.tsv").write_text(matrix.to_csv(sep="\t"))
    sheet.to_csv(tmp_path / "samples.csv", index=False)
    return {"matrix": matrix, "sheet": sheet, "t": pd.Series(t, index=patients),
            "e": pd.Series(e, index=patients), "t_genes": t_genes, "e_genes": e_genes}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("rna_build")
    cohort = planted_cohort(tmp)
    adata = build_rna(tmp / "rna_counts.tsv", tmp / "samples.csv", RnaConfig(),
                      tmp / "rna" / "demo.h5ad", qc=tmp / "rna" / "demo.qc.png",
                      summary=tmp / "rna" / "demo.summary.txt")
    return {"tmp": tmp, "adata": adata, **cohort}


def test_h5ad_contract(built: dict) -> None:
    tmp, matrix = built["tmp"], built["matrix"]
    adata = ad.read_h5ad(tmp / "rna" / "demo.h5ad")
    patients = [f"P{i:03d}" for i in range(1, N_PATIENTS)]
    assert adata.obs_names.tolist() == patients and adata.obs.index.name == "patient_id"
    for col in ("rna_sample_id", "site", "label", "time", "event"):
        assert col in adata.obs.columns
    assert adata.obs.loc["P005", "rna_sample_id"] == "P005-R"
    sheet = built["sheet"].drop_duplicates("patient_id").set_index("patient_id")
    assert adata.obs.loc["P007", "time"] == pytest.approx(sheet.loc["P007", "time"])
    assert int(adata.obs.loc["P007", "event"]) == sheet.loc["P007", "event"]
    assert list(adata.uns["patients_without_rna"]) == ["P000"]

    assert adata.var_names.is_unique and list(adata.var_names) == sorted(adata.var_names)
    gene_map = load_gene_map()
    known = [g for g in adata.var_names if g in gene_map.symbol_to_ensembl]
    assert len(known) > 250
    assert adata.var.loc[known, "ensembl_id"].tolist() == [gene_map.symbol_to_ensembl[g]
                                                           for g in known]
    counts = np.asarray(adata.layers["counts"])
    expected = matrix.loc[adata.var_names, adata.obs["rna_sample_id"]].T.to_numpy()
    np.testing.assert_array_equal(counts, expected)
    cpm = counts / counts.sum(axis=1, keepdims=True) * 1e6
    np.testing.assert_allclose(adata.X, np.log1p(cpm), rtol=1e-5)

    assert adata.var["highly_variable"].dtype == bool
    assert adata.var["highly_variable"].sum() == round(0.3 * adata.n_vars)
    groups = adata.uns["gene_groups"]
    assert set(groups["T"]) == set(adata.var_names[adata.var["group_T"]])
    assert set(groups["E"]) == set(adata.var_names[adata.var["group_E"]])
    assert not set(groups["T"]) & set(groups["E"])
    assert set(groups["T"]) <= set(adata.var_names[adata.var["highly_variable"]])

    pathways = adata.obsm["pathways"]
    assert isinstance(pathways, pd.DataFrame)
    assert pathways.index.tolist() == patients
    scored = adata.uns["gene_sets"]["name"][adata.uns["gene_sets"]["scored"]]
    assert pathways.columns.tolist() == list(scored)
    assert list(adata.obsm["group_scores"].columns) == ["T", "E"]

    prov = adata.uns["provenance"]
    assert prov["input"] == "rna_counts.tsv"
    assert json.loads(prov["settings"]) == json.loads(RnaConfig().model_dump_json())
    assert "duopath_version" in prov and prov["orientation"].startswith("genes × samples")

    summary = (tmp / "rna" / "demo.summary.txt").read_text()
    assert "patients in sheet: 24; with RNA: 23; without RNA: 1" in summary
    assert "mapped to HGNC: 300 (100.0%)" in summary
    png = (tmp / "rna" / "demo.qc.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20000


def test_planted_factors_are_recovered_by_the_group_scores(built: dict) -> None:
    adata = built["adata"]
    scores = adata.obsm["group_scores"]
    t = built["t"].loc[adata.obs_names]
    e = built["e"].loc[adata.obs_names]
    assert np.corrcoef(scores["T"], t)[0, 1] > 0.8
    assert np.corrcoef(scores["E"], e)[0, 1] > 0.8
    assert abs(np.corrcoef(scores["T"], e)[0, 1]) < 0.5
    # The planted genes are the variable ones, so they made the HVG cut into their group.
    assert len(set(adata.uns["gene_groups"]["T"]) & set(built["t_genes"])) > 40


def test_shuffled_rows_and_columns_give_identical_output(built: dict, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    matrix, sheet = built["matrix"], built["sheet"]
    shuffled = matrix.iloc[rng.permutation(len(matrix)), rng.permutation(matrix.shape[1])]
    (tmp_path / "rna_counts.tsv").write_text(shuffled.to_csv(sep="\t"))
    sheet.iloc[rng.permutation(len(sheet))].to_csv(tmp_path / "samples.csv", index=False)
    got = build_rna(tmp_path / "rna_counts.tsv", tmp_path / "samples.csv", RnaConfig(),
                    tmp_path / "out.h5ad")
    ref = built["adata"]
    np.testing.assert_array_equal(got.X, ref.X)
    np.testing.assert_array_equal(got.layers["counts"], ref.layers["counts"])
    pd.testing.assert_frame_equal(got.obs, ref.obs)
    pd.testing.assert_frame_equal(got.var, ref.var)
    pd.testing.assert_frame_equal(got.obsm["pathways"], ref.obsm["pathways"])
    for key in ("T", "E"):
        assert list(got.uns["gene_groups"][key]) == list(ref.uns["gene_groups"][key])


def _meta(ids: list[str], patient: list[str] | None = None, types: list[str] | None = None,
          aliases: list[str] | None = None) -> pd.DataFrame:
    from duopath.rna.readers import _sample_type

    return pd.DataFrame({
        "file": "m.tsv",
        "patient": patient or [""] * len(ids),
        "sample_type": types or [_sample_type(i, "") for i in ids],
        "aliases": aliases or [""] * len(ids),
    }, index=pd.Index(ids, name="sample_id"))


def _sheet(patients: list[str], rna_ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"patient_id": patients, "rna_sample_id": rna_ids})


def test_tcga_one_sample_per_patient_primary_preferred() -> None:
    meta = _meta(["TCGA-A2-A0CM-11A-33R-A034-07", "TCGA-A2-A0CM-01B-11R-A034-07",
                  "TCGA-A2-A0CM-01A-11R-A034-07", "TCGA-BH-A0B3-06A-11R-A12P-07",
                  "TCGA-BH-A0B3-11A-11R-A12P-07", "TCGA-ZZ-0000-01A-11R-A12P-07"])
    sheet = _sheet(["TCGA-A2-A0CM", "TCGA-A2-A0CM", "TCGA-BH-A0B3", "TCGA-E2-A1B6"],
                   ["", "", "", ""])
    res = join_samples(sheet, meta, mode="auto", preference=RnaConfig().sample_type_preference,
                       source="m.tsv")
    assert res.mode == "patient"
    assert res.chosen == {"TCGA-A2-A0CM": "TCGA-A2-A0CM-01A-11R-A034-07",
                          "TCGA-BH-A0B3": "TCGA-BH-A0B3-06A-11R-A12P-07"}
    assert res.dropped["TCGA-A2-A0CM"] == ["TCGA-A2-A0CM-01B-11R-A034-07",
                                           "TCGA-A2-A0CM-11A-33R-A034-07"]
    assert res.patients_without_rna == ["TCGA-E2-A1B6"]
    assert res.unmatched_samples == ["TCGA-ZZ-0000-01A-11R-A12P-07"]
    # Shuffled sample order: same choice.
    res2 = join_samples(sheet, meta.iloc[::-1], mode="auto", preference=["01", "06", "11"],
                        source="m.tsv")
    assert res2.chosen == res.chosen
    # A preference for normal tissue flips the choice.
    res3 = join_samples(sheet, meta, mode="patient", preference=["11"], source="m.tsv")
    assert res3.chosen["TCGA-A2-A0CM"] == "TCGA-A2-A0CM-11A-33R-A034-07"


def test_sample_mode_matches_exact_alias_and_tcga_prefix() -> None:
    meta = _meta(["TCGA-A2-A0CM-01A-11R-A034-07", "TCGA-A2-A0CM-11A-33R-A034-07", "S-9",
                  "GDCSAMPLE"], patient=["", "", "", "CASE-7"],
                 aliases=["", "", "", "uuid-7;f7.rna_seq.augmented_star_gene_counts.tsv"])
    sheet = _sheet(["TCGA-A2-A0CM", "P9", "P7", "P8", "P6"],
                   ["TCGA-A2-A0CM-01A", "S-9", "uuid-7", "", "S-GONE"])
    res = join_samples(sheet, meta, mode="auto", preference=["01"], source="m.tsv")
    assert res.mode == "sample"
    assert res.chosen == {"TCGA-A2-A0CM": "TCGA-A2-A0CM-01A-11R-A034-07", "P9": "S-9",
                          "P7": "GDCSAMPLE"}
    # Empty rna_sample_id in sample mode: no RNA; a named sample the input lacks: reported.
    assert res.patients_without_rna == ["P6", "P8"]
    assert res.not_found == ["S-GONE"]


def test_join_errors() -> None:
    meta = _meta(["S1", "S2"])
    with pytest.raises(RnaError, match=r"none of the 2 RNA samples of m.tsv matches a patient.*"
                                       r"RNA IDs e.g. S1, S2.*rna_sample_id e.g. X1"):
        join_samples(_sheet(["P1"], ["X1"]), meta, mode="auto", preference=[], source="m.tsv")
    with pytest.raises(RnaError, match=r"RNA sample S1 of m.tsv matches rna_sample_id of two "
                                       r"patients \(P1 and P2\)"):
        join_samples(_sheet(["P1", "P2"], ["S1", "S1"]), meta, mode="sample", preference=[],
                     source="m.tsv")


def test_ids_matching_no_patient_fail_the_build(tmp_path: Path) -> None:
    cohort = planted_cohort(tmp_path, n=6)
    cohort["matrix"].rename(columns=lambda c: "OTHER-" + c).to_csv(tmp_path / "rna_counts.tsv",
                                                                    sep="\t")
    with pytest.raises(RnaError, match=r"rna_counts.tsv matches a patient of the sample sheet"):
        build_rna(tmp_path / "rna_counts.tsv", tmp_path / "samples.csv", RnaConfig(),
                  tmp_path / "o.h5ad")
    assert not (tmp_path / "o.h5ad").exists()


def test_all_zero_sample_fails_or_is_dropped(tmp_path: Path) -> None:
    cohort = planted_cohort(tmp_path, n=8)
    matrix = cohort["matrix"].copy()
    matrix["P003-R"] = 0
    matrix.to_csv(tmp_path / "rna_counts.tsv", sep="\t")
    with pytest.raises(RnaError, match=r"P003-R \(patient P003, .*rna_counts.tsv\).*"
                                       r"drop_empty_samples"):
        build_rna(tmp_path / "rna_counts.tsv", tmp_path / "samples.csv", RnaConfig(),
                  tmp_path / "o.h5ad")
    adata = build_rna(tmp_path / "rna_counts.tsv", tmp_path / "samples.csv",
                      RnaConfig(drop_empty_samples=True, groups_from_hvg=False),
                      tmp_path / "o.h5ad")
    assert "P003" not in adata.obs_names
    assert list(adata.uns["patients_without_rna"]) == ["P000", "P003"]


def test_user_gmt_without_any_gene_in_data_fails(tmp_path: Path) -> None:
    planted_cohort(tmp_path, n=6)
    gmt = tmp_path / "mouse.gmt"
    gmt.write_text("MOUSE_T\tx\tMki67\tTop2a\nMOUSE_E\tx\tCd8a\tGzmb\n")
    cfg = RnaConfig(gene_sets=["hallmark", str(gmt)])
    with pytest.raises(RnaError, match=r"gene-set source .*mouse.gmt: none of its 4 genes"):
        build_rna(tmp_path / "rna_counts.tsv", tmp_path / "samples.csv", cfg, tmp_path / "o.h5ad")


def test_score_genes_method_with_user_gmt_groups(built: dict, tmp_path: Path) -> None:
    gmt = tmp_path / "mine.gmt"
    gmt.write_text("MY_T\tplanted\t" + "\t".join(built["t_genes"][:30]) + "\n"
                   "MY_E\tplanted\t" + "\t".join(built["e_genes"][:30]) + "\n")
    cfg = RnaConfig(gene_sets=[str(gmt)], tumour_sets=["MY_T"], tme_sets=["MY_E"],
                    score_method="score_genes", groups_from_hvg=False)
    adata = build_rna(built["tmp"] / "rna_counts.tsv", built["tmp"] / "samples.csv", cfg,
                      tmp_path / "o.h5ad")
    assert adata.obsm["pathways"].columns.tolist() == ["MY_T", "MY_E"]
    t = built["t"].loc[adata.obs_names]
    assert np.corrcoef(adata.obsm["pathways"]["MY_T"], t)[0, 1] > 0.8
    assert adata.uns["gene_sets"]["method"] == "score_genes"
    assert "citation" not in adata.uns["gene_sets"]


def test_rank_scores_planted_set_scores_higher() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(5.0, 1.0, size=(10, 200))
    genes = pd.Index([f"G{i}" for i in range(200)])
    up = [f"G{i}" for i in range(20)]
    x[5:, :20] += 3.0  # planted in samples 5..9
    scores = rank_scores(x, genes, {"UP": up, "NULL": [f"G{i}" for i in range(100, 120)]})
    assert scores.shape == (10, 2)
    assert scores["UP"].iloc[5:].min() > scores["UP"].iloc[:5].max()
    assert (scores["UP"].iloc[5:] > scores["NULL"].iloc[5:]).all()
    assert scores.to_numpy().min() >= -0.5 and scores.to_numpy().max() <= 0.5
    top = rank_scores(np.arange(10.0)[None, :], pd.Index(list("abcdefghij")), {"s": ["i", "j"]})
    assert top["s"].iat[0] == pytest.approx(0.5)


def test_scaler_fits_on_train_only(built: dict) -> None:
    adata = built["adata"]
    patients = adata.obs_names.tolist()
    train, test = patients[:15], patients[15:]
    genes = list(adata.uns["gene_groups"]["T"])
    mean, std = fit_scaler(adata, [*train, "P000"], genes=genes)  # P000: no RNA, skipped
    x_train = np.asarray(adata[train, genes].X, dtype=np.float64)
    np.testing.assert_allclose(mean.to_numpy(), x_train.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(std.to_numpy(), x_train.std(axis=0), rtol=1e-5)
    # A leaked fit (train + test) gives a different mean: the train-only fit is not it.
    leaked_mean, _ = fit_scaler(adata, train + test, genes=genes)
    assert not np.allclose(leaked_mean.to_numpy(), mean.to_numpy())
    with pytest.raises(ScalerLeakError, match=r"2 held-out patients .*P016, P017"):
        fit_scaler(adata, train + test[:2], genes=genes, held_out=test)
    z_train = apply_scaler(adata, mean, std, patients=train)
    np.testing.assert_allclose(z_train.mean(axis=0), 0.0, atol=1e-5)
    z_test = apply_scaler(adata, mean, std, patients=test)
    assert z_test.shape == (len(test), len(genes))
    with pytest.raises(RnaError, match=r"not in the RNA AnnData.*NOBODY"):
        fit_scaler(adata, [*train, "NOBODY"])
    with pytest.raises(RnaError, match="without RNA cannot be scaled: P000"):
        apply_scaler(adata, mean, std, patients=["P000"])


def test_cli_through_typer(built: dict, tmp_path: Path) -> None:
    from duopath.cli.rna import rna

    app = typer.Typer()
    app.command("rna")(rna)

    @app.callback()
    def _group() -> None:  # makes `rna` a subcommand, as in the real CLI
        pass

    runner = CliRunner()
    args = ["rna", "--source", str(built["tmp"] / "rna_counts.tsv"),
            "--sheet", str(built["tmp"] / "samples.csv"), "--out", str(tmp_path / "c.h5ad"),
            "--summary", str(tmp_path / "c.txt")]
    settings = RnaConfig(hvg_fraction=0.5).model_dump_json()
    result = runner.invoke(app, [*args, "--settings", settings])
    assert result.exit_code == 0, result.output
    adata = ad.read_h5ad(tmp_path / "c.h5ad")
    assert adata.uns["hvg"]["fraction"] == 0.5
    assert (tmp_path / "c.txt").exists()
    bad = runner.invoke(app, [*args, "--settings", '{"hvg_fraction": 2}'])
    assert bad.exit_code == 1
    assert "rna.hvg_fraction" in bad.output
    missing = runner.invoke(app, ["rna", "--source", str(tmp_path / "none.tsv"), "--sheet",
                                  str(built["tmp"] / "samples.csv"), "--out",
                                  str(tmp_path / "x.h5ad")])
    assert missing.exit_code == 1 and "none.tsv does not exist" in missing.output
    # the sheet is read by the one canonical reader (duopath.cohort): a raw sheet is refused
    raw = tmp_path / "raw.csv"
    built["sheet"].drop(columns="rna_sample_id").to_csv(raw, index=False)
    raw_run = runner.invoke(app, ["rna", "--source", str(built["tmp"] / "rna_counts.tsv"),
                                  "--sheet", str(raw), "--out", str(tmp_path / "r.h5ad")])
    assert raw_run.exit_code == 1
    assert "lacks column(s) ['rna_sample_id']" in raw_run.output and not (tmp_path / "r.h5ad").exists()
