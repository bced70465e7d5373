# ruff: noqa: N815 - genes_T / genes_E: T and E are the paper's subspace names
"""Per-fold gene inputs: the T and E gene groups of the RNA AnnData, z-scored per fold.

RNA is joined by patient ID, never by row position, and z-scored with a scaler fit on the fold's
TRAINING patients only (``duopath.rna.normalise.fit_scaler``), so no held-out expression level
leaks into training. A cohort without RNA gets zero-width groups (:func:`no_genes`), so slide-only
models train on the same samples and batches.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from duopath.training.data import DataError


@dataclass
class FoldGenes:
    """Per-fold z-scored gene groups: ``values[patient] = (genes_T, genes_E)``.

    ``mean``/``std`` are the scaler (fit on the fold's training patients) over the T genes then
    the E genes; ``train_mean_T``/``train_mean_E`` are the training patients' mean z-scores
    (the RNA-mean ablation's input, and the stand-in for a missing RNA under
    ``missing_rna: mean``).
    """

    genes_T: list[str]
    genes_E: list[str]
    mean: pd.Series
    std: pd.Series
    values: dict[str, tuple[np.ndarray, np.ndarray]]
    train_mean_T: np.ndarray
    train_mean_E: np.ndarray
    imputed: list[str] = field(default_factory=list)


def no_genes(patients: Iterable[str]) -> FoldGenes:
    """Zero-width gene groups for a cohort without RNA: slide-only models train on it unchanged
    (every sample carries empty T/E vectors, so batches and checkpoints keep one schema)."""
    empty = np.zeros(0, dtype=np.float32)
    return FoldGenes([], [], pd.Series(dtype=float), pd.Series(dtype=float),
                     {str(p): (empty, empty) for p in patients}, empty, empty, [])


def gene_groups(adata) -> tuple[list[str], list[str]]:
    """The T and E gene lists of an RNA AnnData (``var.group_T`` / ``var.group_E``)."""
    for col in ("group_T", "group_E"):
        if col not in adata.var.columns:
            raise DataError(f"the RNA AnnData has no var[{col!r}] (built by `duopath rna`?)")
    t = [str(g) for g in adata.var_names[adata.var["group_T"].astype(bool).to_numpy()]]
    e = [str(g) for g in adata.var_names[adata.var["group_E"].astype(bool).to_numpy()]]
    if not t or not e:
        raise DataError(f"empty gene group: T has {len(t)} genes, E has {len(e)}")
    return t, e


def fold_genes(
    adata,
    train_patients: Iterable[str],
    held_out: Iterable[str],
    patients: Iterable[str],
    missing_rna: str = "exclude",
) -> FoldGenes:
    """Scale the T/E groups with a scaler fit on ``train_patients`` and return ``patients``' rows.

    Patients without RNA get the training mean under ``missing_rna="mean"`` and are simply
    absent from ``values`` under ``"exclude"`` (the caller drops them).
    """
    from duopath.rna.normalise import apply_scaler, fit_scaler

    genes_t, genes_e = gene_groups(adata)
    genes = genes_t + genes_e
    mean, std = fit_scaler(adata, list(train_patients), genes=genes, held_out=list(held_out))
    have = set(adata.obs_names)
    train_rna = [p for p in train_patients if p in have]
    z_train = apply_scaler(adata, mean, std, patients=train_rna)
    nt = len(genes_t)
    mean_t = z_train[:, :nt].mean(axis=0).astype(np.float32)
    mean_e = z_train[:, nt:].mean(axis=0).astype(np.float32)
    wanted = [str(p) for p in patients]
    with_rna = [p for p in wanted if p in have]
    z = apply_scaler(adata, mean, std, patients=with_rna) if with_rna else np.zeros((0, len(genes)))
    values = {p: (z[i, :nt].astype(np.float32), z[i, nt:].astype(np.float32)) for i, p in enumerate(with_rna)}
    imputed: list[str] = []
    if missing_rna == "mean":
        for p in wanted:
            if p not in values:
                values[p] = (mean_t.copy(), mean_e.copy())
                imputed.append(p)
    elif missing_rna != "exclude":
        raise ValueError(f"missing_rna must be 'exclude' or 'mean', got {missing_rna!r}")
    return FoldGenes(genes_t, genes_e, mean, std, values, mean_t, mean_e, imputed)
