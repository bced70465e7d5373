"""QC of the RNA stage: one figure and one text summary, written beside the h5ad.

The figure answers the questions a user asks before trusting the RNA input: are library sizes
sane (a failed library stands out), did HVG selection pick the genes off the mean–variance
trend, does a PCA separate samples by site (batch) more than by label (biology), and do the
tumour and TME group scores vary independently of each other.

The PCA here is for display only (computed on the HVGs, cohort-wide) and is not stored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from duopath.io import atomic_path


def _pca(matrix: np.ndarray, n: int = 2) -> np.ndarray:
    centred = matrix - matrix.mean(axis=0)
    scale = centred.std(axis=0)
    centred = centred / np.where(scale > 0, scale, 1.0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    return u[:, :n] * s[:n]


def qc_figure(adata, dest: Path | str) -> None:
    """Six panels: library sizes, mean–variance with HVGs, PCA by site and label, T vs E."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 9), layout="constrained")
    axes = fig.subplots(2, 3)

    ax = axes[0, 0]
    lib = adata.obs["library_size"].to_numpy(dtype=float)
    if np.isfinite(lib).all():
        order = np.argsort(lib)
        ax.bar(np.arange(len(lib)), lib[order], color="#4477aa", width=1.0)
        ax.set_yscale("log")
        ax.set_title("library size per sample (sorted)")
        ax.set_ylabel("sum of input values")
    else:  # log-scale / z-scored input has no library: a failed array shows in its median
        med = np.median(np.asarray(adata.X, dtype=float), axis=1)
        order = np.argsort(med)
        ax.bar(np.arange(len(med)), med[order], color="#4477aa", width=1.0)
        ax.set_title("median value per sample (sorted; input already log/z-scaled)")
        ax.set_ylabel("median of X")
    ax.set_xlabel("sample")

    ax = axes[0, 1]
    x = np.asarray(adata.X, dtype=float)
    mean, var = x.mean(axis=0), x.var(axis=0)
    hvg = adata.var["highly_variable"].to_numpy(bool)
    ax.scatter(mean[~hvg], var[~hvg], s=3, c="#bbbbbb", label="other", rasterized=True)
    ax.scatter(mean[hvg], var[hvg], s=3, c="#cc3311", label=f"HVG ({hvg.sum()})",
               rasterized=True)
    ax.set_title("mean–variance of log expression")
    ax.set_xlabel("mean log1p")
    ax.set_ylabel("variance")
    ax.legend(loc="upper right", markerscale=4)

    pcs = _pca(x[:, hvg] if hvg.sum() >= 2 else x)
    for ax, col in ((axes[0, 2], "site"), (axes[1, 0], "label")):
        _scatter_by(ax, pcs[:, 0], pcs[:, min(1, pcs.shape[1] - 1)], adata.obs[col])
        ax.set_title(f"PCA of HVGs, coloured by {col}")
        ax.set_xlabel("PC1")
        ax.set_ylabel("PC2")

    ax = axes[1, 1]
    groups = adata.obsm["group_scores"]
    _scatter_by(ax, groups["T"].to_numpy(), groups["E"].to_numpy(), adata.obs["label"])
    r = np.corrcoef(groups["T"], groups["E"])[0, 1] if adata.n_obs > 2 else np.nan
    ax.set_title(f"group scores T vs E (r = {r:.2f})")
    ax.set_xlabel(f"T score ({int(adata.var['group_T'].sum())} genes)")
    ax.set_ylabel(f"E score ({int(adata.var['group_E'].sum())} genes)")

    ax = axes[1, 2]
    pathways = adata.obsm["pathways"]
    spread = pathways.std(axis=0).sort_values(ascending=False).head(15)
    ax.barh(np.arange(len(spread))[::-1], spread.to_numpy(), color="#228833")
    ax.set_yticks(np.arange(len(spread))[::-1],
                  [n.removeprefix("HALLMARK_")[:28] for n in spread.index], fontsize=7)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title("most variable pathway scores (std)")

    fig.suptitle(f"RNA QC: {adata.n_obs} patients × {adata.n_vars} genes")
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def _scatter_by(ax, x: np.ndarray, y: np.ndarray, values: pd.Series) -> None:
    values = values.astype(str).replace({"": "(none)", "nan": "(none)", "<NA>": "(none)"})
    cats = sorted(values.unique())
    cmap = ["#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb"]
    for i, cat in enumerate(cats[:12]):
        mask = (values == cat).to_numpy()
        ax.scatter(x[mask], y[mask], s=14, c=cmap[i % len(cmap)], label=cat)
    if len(cats) <= 12:
        ax.legend(fontsize=7, loc="best")


def summary_text(adata, report, sheet: pd.DataFrame) -> str:
    """A plain-text summary: samples, genes, mapped %, groups, and who is missing."""
    raw, join, genes, groups = report.raw, report.join, report.genes, report.groups
    n_patients = sheet["patient_id"].nunique()
    table = groups.table
    lines = [
        "duopath RNA summary",
        f"input: {adata.uns['provenance']['input']} ({raw.fmt}; {raw.orientation})",
        f"samples read: {len(raw.sample_ids)}; matched to a patient: "
        f"{len(raw.sample_ids) - len(join.unmatched_samples)} (join by {join.mode})",
        f"patients in sheet: {n_patients}; with RNA: {adata.n_obs}; without RNA: "
        f"{len(adata.uns['patients_without_rna'])}",
    ]
    if len(adata.uns["patients_without_rna"]):
        lines.append("  without RNA: " + ", ".join(map(str, adata.uns["patients_without_rna"][:30])))
    if join.unmatched_samples:
        lines.append(f"  RNA samples matching no patient ({len(join.unmatched_samples)}): "
                     + ", ".join(join.unmatched_samples[:30]))
    if join.not_found:
        lines.append(f"  sheet rna_sample_id not in the input ({len(join.not_found)}): "
                     + ", ".join(join.not_found[:30]))
    if join.dropped:
        lines.append(f"  patients with several RNA samples ({len(join.dropped)}), kept / dropped: "
                     + "; ".join(f"{p}: {join.chosen[p]} / {', '.join(d)}"
                                 for p, d in list(join.dropped.items())[:20]))
    if report.empty_samples:
        lines.append("  all-zero samples dropped: " + ", ".join(report.empty_samples))
    lines += [
        f"values: {adata.uns['normalisation']['value_type']} "
        f"(transform: {adata.uns['normalisation']['transform']})",
        f"genes in input: {genes.n_input}; mapped to HGNC: {genes.n_mapped} "
        f"({genes.mapped_fraction:.1%}); unmapped: {len(genes.unmapped)}"
        + (f" (e.g. {', '.join(genes.unmapped[:5])})" if genes.unmapped else "")
        + (f"; _PAR_Y rows dropped: {genes.n_par_y}" if genes.n_par_y else "")
        + (f"; symbols from rna.gene_map: {genes.n_user_mapped}" if genes.n_user_mapped else "")
        + (f"; not recognised, kept under their label: {len(genes.unrecognised)}"
           if genes.unrecognised else ""),
        f"  not protein-coding, left out: {genes.n_not_protein_coding}; rows sharing a symbol: "
        f"{genes.n_duplicate_rows} (rule {adata.uns['genes']['duplicate_rule']}); zero in every "
        f"sample: {report.n_zero_genes}",
        f"genes kept: {adata.n_vars}; highly variable: {int(adata.var['highly_variable'].sum())} "
        f"({adata.uns['hvg']['method']}, top {adata.uns['hvg']['fraction']:.0%})",
        f"gene group T (tumour): {len(groups.tumour)} genes from "
        f"{', '.join(adata.uns['gene_sets']['tumour_sets'])}",
        f"gene group E (TME): {len(groups.tme)} genes from "
        f"{', '.join(adata.uns['gene_sets']['tme_sets'])}",
        f"  genes in both groups' sets: {len(groups.overlap)} "
        f"(rule {adata.uns['gene_sets']['group_overlap']})",
        f"gene sets: {len(table)} from {', '.join(dict.fromkeys(table['source']))}; scored: "
        f"{int(table['scored'].sum())} ({adata.uns['gene_sets']['method']})",
    ]
    unscored = table.loc[~table["scored"], "name"].tolist()
    if unscored:
        lines.append(f"  not scored (too few genes present): {', '.join(unscored[:20])}")
    return "\n".join(lines) + "\n"
