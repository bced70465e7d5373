"""Pathway (gene-set) scores per sample, on the log-normalised expression ``X``.

Two methods (``rna.score_method``):

- ``rank`` (default): singscore-style. Within each sample, genes are ranked by expression
  (ties averaged); a set's score is the mean rank of its genes, rescaled so that the lowest
  possible mean rank gives -0.5 and the highest +0.5. It uses *only that sample*, so a
  patient's score never depends on which other patients are in the cohort or fold, and it is
  insensitive to the choice of normalisation (any monotone transform gives the same ranks).
- ``score_genes``: ``scanpy.tl.score_genes`` -- the set's mean minus the mean of control genes
  drawn from the same expression bins (seeded). Control bins use cohort-wide gene means: a
  label-free statistic, but it does depend on the cohort.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from tqdm.auto import tqdm

log = logging.getLogger(__name__)


def rank_scores(matrix: np.ndarray, gene_index: pd.Index, sets: dict[str, list[str]]
                ) -> pd.DataFrame:
    """Singscore-like scores (samples × sets) in [-0.5, 0.5]; see the module docstring."""
    n = matrix.shape[1]
    ranks = rankdata(matrix, axis=1)  # 1 = lowest expression in that sample
    out = {}
    for name, genes in sets.items():
        idx = gene_index.get_indexer(genes)
        idx = idx[idx >= 0]
        k = len(idx)
        lo, hi = (k + 1) / 2.0, (2 * n - k + 1) / 2.0
        mean_rank = ranks[:, idx].mean(axis=1)
        out[name] = (mean_rank - lo) / (hi - lo) - 0.5 if hi > lo else np.zeros(len(matrix))
    return pd.DataFrame(out)


def score_sets(adata, sets: dict[str, list[str]], *, method: str, seed: int = 0) -> pd.DataFrame:
    """Scores of every set (genes already restricted to ``adata.var_names``), obs × sets."""
    if method == "rank":
        frame = rank_scores(np.asarray(adata.X, dtype=np.float64), adata.var_names, sets)
    elif method == "score_genes":
        import anndata as ad
        import scanpy as sc

        cols = {}
        # A bare AnnData over the same X: score_genes writes into obs, and a full copy would
        # duplicate the counts layer of a large cohort for nothing.
        work = ad.AnnData(X=adata.X, obs=pd.DataFrame(index=adata.obs_names.copy()),
                          var=pd.DataFrame(index=adata.var_names.copy()))
        for name, genes in tqdm(sets.items(), desc="score_genes", unit="set", disable=None):
            sc.tl.score_genes(work, gene_list=genes, score_name="_duopath_score",
                              random_state=seed, use_raw=False)
            cols[name] = work.obs["_duopath_score"].to_numpy(dtype=np.float64)
        frame = pd.DataFrame(cols)
    else:
        raise ValueError(f"unknown score method {method!r}")
    frame.index = adata.obs_names.copy()
    return frame
