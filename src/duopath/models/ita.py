"""Informative token aggregation (ITA): DPC-KNN clustering of tile tokens + ω-weighted merge.

DPC-KNN (density-peak clustering with kNN density, as in TCFormer), in token FEATURE space:

* local density ρ_i = exp(-mean_{j∈kNN(i)} d_ij²), k = 5 nearest other real tokens,
  with d the Euclidean feature distance divided by √d (keeps ρ away from 0 for wide tokens);
* δ_i = distance to the nearest token with strictly higher density; for the densest token,
  its largest distance to any real token (≥ every other δ, so the global peak is a centre);
* score ρ·δ; the top-K tokens are the cluster centres (ordered by score, not by index);
* every real token joins its nearest centre (a group of <= k tokens has no density of its
  own: its kNN reach into other groups, so it joins a neighbour rather than becoming a
  centre); prototypes are ω-weighted means of their clusters (ω = exp(Linear(d→1)),
  clamped, computed by the student).

Why blockwise: both passes need all pairwise distances; computing them in row blocks keeps
memory at O(block·N) + O(N·k) instead of O(N²) (DESIGN.md, "Scale notes"). Compute stays
O(N²·d) per slide — on GPU that is milliseconds for N ≈ 20k. Centre choice and assignment
are discrete, so they run without gradient; ω and the tokens receive gradient through the
merge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from duopath.models.grid import block_rows


@dataclass
class Clustering:
    """DPC-KNN result for a batch.

    ``centers`` [B, K] token index of each centre (ordered by score), ``center_valid`` [B, K]
    (False when a sample has fewer than K real tokens), ``assign`` [B, N] cluster of each
    token (-1 on padding), ``density``, ``delta``, ``score`` [B, N] (score -inf on padding).
    """

    centers: Tensor
    center_valid: Tensor
    assign: Tensor
    density: Tensor
    delta: Tensor
    score: Tensor


def _block_dist(x: Tensor, start: int, rows: int) -> Tensor:
    """Feature distances of rows [start, start+rows) to all tokens, scaled by 1/√d."""
    return torch.cdist(x[:, start : start + rows], x) / math.sqrt(x.shape[-1])


@torch.no_grad()
def dpc_knn(
    x: Tensor, mask: Tensor, n_clusters: int, k: int = 5, *, chunk_size: int | None = None
) -> Clustering:
    """Cluster tokens ``x`` [B, N, d] (``mask`` [B, N] True = real) into ``n_clusters``."""
    b, n, _ = x.shape
    x = x.detach().float()
    rows = block_rows(b, n, chunk_size)
    cols_ok = mask[:, None, :]
    kk = min(int(k), n)
    inf = float("inf")

    density = torch.empty(b, n, device=x.device)
    row_max = torch.empty(b, n, device=x.device)
    for start in range(0, n, rows):
        d = _block_dist(x, start, rows)  # [B, r, N]
        r = d.shape[1]
        self_col = torch.arange(start, start + r, device=x.device)
        not_self = torch.ones(r, n, dtype=torch.bool, device=x.device)
        not_self[torch.arange(r, device=x.device), self_col] = False
        ok = cols_ok & not_self
        near = d.masked_fill(~ok, inf).topk(kk, dim=-1, largest=False).values
        finite = torch.isfinite(near)
        sq_mean = near.square().masked_fill(~finite, 0.0).sum(-1) / finite.sum(-1).clamp(min=1)
        density[:, start : start + r] = torch.exp(-sq_mean)
        row_max[:, start : start + r] = d.masked_fill(~cols_ok, 0.0).amax(dim=-1)
    density = density.masked_fill(~mask, -1.0)

    delta = torch.empty(b, n, device=x.device)
    for start in range(0, n, rows):
        d = _block_dist(x, start, rows)
        r = d.shape[1]
        higher = density[:, None, :] > density[:, start : start + r, None]
        nearest_higher = d.masked_fill(~(higher & cols_ok), inf).amin(dim=-1)
        delta[:, start : start + r] = torch.where(
            torch.isfinite(nearest_higher), nearest_higher, row_max[:, start : start + r]
        )

    score = (density * delta).masked_fill(~mask, -inf)
    kc = min(int(n_clusters), n)
    top = score.topk(kc, dim=-1)
    centers, center_valid = top.indices, torch.isfinite(top.values)
    if kc < n_clusters:
        pad = n_clusters - kc
        centers = torch.cat([centers, centers.new_zeros(b, pad)], dim=1)
        center_valid = torch.cat([center_valid, center_valid.new_zeros(b, pad)], dim=1)

    center_x = x.gather(1, centers.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    to_center = torch.cdist(x, center_x).masked_fill(~center_valid[:, None, :], inf)
    assign = to_center.argmin(dim=-1).masked_fill(~mask, -1)
    return Clustering(centers, center_valid, assign, density, delta, score)


def merge_tokens(x: Tensor, weight: Tensor, assign: Tensor, n_clusters: int) -> tuple[Tensor, Tensor]:
    """ω-weighted mean of each cluster's tokens.

    Args:
        x: [B, N, d] tokens; weight: [B, N] ω (0 on padding); assign: [B, N] (-1 = padding).

    Returns:
        prototypes [B, K, d] (zero for an empty cluster) and cluster mass Σω [B, K].
    """
    b, _, d = x.shape
    x, weight = x.float(), weight.float()  # fp32 sums: the mass may be tiny (see below)
    idx = assign.clamp(min=0)
    w = weight * (assign >= 0)
    mass = w.new_zeros(b, n_clusters).scatter_add(1, idx, w)
    summed = x.new_zeros(b, n_clusters, d).scatter_add(
        1, idx.unsqueeze(-1).expand(-1, -1, d), x * w.unsqueeze(-1)
    )
    # No additive eps: ω can be as small as exp(-clamp), and "+eps" would bias small clusters.
    return summed / mass.clamp(min=1e-30).unsqueeze(-1), mass
