"""Normalisation (scanpy), highly variable genes, and the per-fold z-score scaler.

What is stored in the h5ad is *cohort-independent per sample*: ``layers["counts"]`` (input
values) and ``X`` = log1p of library-size-normalised counts (or of TPM / FPKM(-UQ) as given;
log-scale and z-scored input as given). Nothing here uses another sample's values, so nothing
leaks between folds. (A matrix z-scored by its provider over all patients did use them; that
happened before duopath saw it, and the per-fold scaler below re-centres it on training
patients anyway.)

What is *not* stored is a z-score: a gene's mean and standard deviation are statistics of a
set of patients, and fitting them on the whole cohort would let test patients shape the
training inputs. Splits are made by a later stage, so training calls :func:`fit_scaler` with
its fold's training patients and :func:`apply_scaler` on every partition.

HVG selection (``rna.hvg_fraction``, the paper's top 30 %) is a cohort-wide, label-free
statistic: it is computed once on all samples, as the reference does, and only *flags* genes
(``var["highly_variable"]``); nothing is dropped from the file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import pandas as pd

from duopath.rna import RnaError

log = logging.getLogger(__name__)

STD_FLOOR = 1e-8


class ScalerLeakError(RnaError):
    """The scaler was asked to fit on patients that are held out (validation/test)."""


#: Input already transformed: used as given (no library scaling, no log1p).
AS_GIVEN = ("log", "zscore")


def normalise(adata, *, value_type: str, target_sum: float) -> None:
    """Fill ``X`` with log expression, in place; ``layers["counts"]`` must hold the input.

    Counts are scaled to ``target_sum`` reads per sample first (CPM for 1e6), because library
    sizes differ several-fold between samples; TPM and FPKM(-UQ) are already normalised for
    depth and are only log1p'd. Log-scale values and z-scores are already transformed: a second
    log would compress them for no reason, so they are used as given.
    """
    import scanpy as sc

    adata.X = np.asarray(adata.layers["counts"], dtype=np.float64).copy()
    if value_type not in AS_GIVEN:
        if value_type == "counts":
            sc.pp.normalize_total(adata, target_sum=target_sum)
        sc.pp.log1p(adata)
    adata.X = np.asarray(adata.X, dtype=np.float32)
    adata.uns["normalisation"] = {
        "value_type": value_type,
        "library_size": f"scaled to {target_sum:g}" if value_type == "counts" else "none",
        "transform": "none (input already transformed)" if value_type in AS_GIVEN else "log1p",
    }


def select_hvg(adata, *, fraction: float, method: str) -> int:
    """Flag the top ``fraction`` of genes as ``var["highly_variable"]``; returns how many.

    ``seurat`` (scanpy) ranks genes by dispersion normalised within bins of mean expression,
    so highly expressed genes do not win on their mean alone; ``variance`` ranks by the plain
    variance of log expression (ties broken by symbol, for determinism); ``none`` flags every
    gene (z-scored input: every gene's variance was set to 1, so no ranking means anything).
    """
    n_genes = adata.n_vars
    if method == "none":
        adata.var["highly_variable"] = np.ones(n_genes, dtype=bool)
        adata.uns["hvg"] = {"fraction": 1.0, "method": "none", "n_top": n_genes}
        return n_genes
    n_top = max(1, min(n_genes, round(fraction * n_genes)))
    if method == "seurat" and n_genes >= 20 and adata.n_obs >= 3:
        import scanpy as sc

        sc.pp.highly_variable_genes(adata, n_top_genes=n_top, flavor="seurat", inplace=True)
        adata.var["highly_variable"] = adata.var["highly_variable"].astype(bool)
    else:
        if method == "seurat":
            log.warning("too few genes/samples (%d × %d) for seurat HVG bins; using variance",
                        adata.n_obs, n_genes)
        var = pd.Series(np.asarray(adata.X).var(axis=0), index=adata.var_names)
        order = sorted(range(n_genes), key=lambda j: (-var.iat[j], adata.var_names[j]))
        flag = np.zeros(n_genes, dtype=bool)
        flag[order[:n_top]] = True
        adata.var["highly_variable"] = flag
        adata.var["variance"] = var.to_numpy()
    n = int(adata.var["highly_variable"].sum())
    adata.uns["hvg"] = {"fraction": fraction, "method": method, "n_top": n}
    return n


def fit_scaler(
    adata,
    train_patients: Iterable[str],
    *,
    genes: Iterable[str] | None = None,
    layer: str | None = None,
    held_out: Iterable[str] | None = None,
) -> tuple[pd.Series, pd.Series]:
    """Per-gene mean and std of the TRAINING patients only (obs index = patient_id).

    Train patients without RNA (listed in ``uns["patients_without_rna"]``) are skipped; a
    patient that is in neither place is an error (a split from another cohort?). ``held_out``
    (the fold's validation/test patients), when given, must not overlap ``train_patients``:
    that is the leak this function exists to prevent, so it raises :class:`ScalerLeakError`.
    A gene constant in the training patients gets std 1 (its z-score is then x - mean), never
    a division by zero.
    """
    train = list(dict.fromkeys(str(p) for p in train_patients))
    if held_out is not None:
        leak = sorted(set(train) & {str(p) for p in held_out})
        if leak:
            raise ScalerLeakError(
                f"{len(leak)} held-out patients are in the scaler's training set (e.g. "
                f"{', '.join(leak[:5])}): fit the scaler on the fold's training patients only"
            )
    no_rna = set(map(str, np.atleast_1d(adata.uns.get("patients_without_rna", []))))
    obs = set(adata.obs_names)
    unknown = [p for p in train if p not in obs and p not in no_rna]
    if unknown:
        raise RnaError(
            f"{len(unknown)} training patients are not in the RNA AnnData (e.g. "
            f"{', '.join(unknown[:5])}): is the split from the same cohort?"
        )
    rows = [p for p in train if p in obs]
    if len(rows) < 2:
        raise RnaError(f"the scaler needs at least 2 training patients with RNA, got {len(rows)}")
    gene_index = adata.var_names if genes is None else pd.Index(list(genes))
    missing = gene_index.difference(adata.var_names)
    if len(missing):
        raise RnaError(f"genes not in the RNA AnnData: {', '.join(missing[:5])}")
    sub = adata[rows, gene_index]
    matrix = np.asarray(sub.layers[layer] if layer else sub.X, dtype=np.float64)
    mean = matrix.mean(axis=0)
    std = matrix.std(axis=0)
    std = np.where(std < STD_FLOOR, 1.0, std)
    return pd.Series(mean, index=gene_index, name="mean"), pd.Series(std, index=gene_index,
                                                                      name="std")


def apply_scaler(
    adata,
    mean: pd.Series,
    std: pd.Series,
    *,
    patients: Iterable[str] | None = None,
    layer: str | None = None,
) -> np.ndarray:
    """z-scores (float32, patients × ``mean.index`` genes) with a scaler from :func:`fit_scaler`.

    ``patients`` defaults to every patient with RNA, in ``obs`` order.
    """
    if not mean.index.equals(std.index):
        raise ValueError("mean and std of a scaler must share one gene index")
    rows = list(adata.obs_names) if patients is None else [str(p) for p in patients]
    missing = [p for p in rows if p not in adata.obs_names]
    if missing:
        raise RnaError(f"patients without RNA cannot be scaled: {', '.join(missing[:5])}")
    sub = adata[rows, mean.index]
    matrix = np.asarray(sub.layers[layer] if layer else sub.X, dtype=np.float64)
    return ((matrix - mean.to_numpy()) / std.to_numpy()).astype(np.float32)
