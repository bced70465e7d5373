"""Neighbour search and interpolation on the REAL tile layout (tile centres in µm).

Why: the reference code reshapes 2,500 tiles into a 50×50 pseudo-grid that has nothing to do
with where the tissue is (DESIGN.md, "Known defects"). Every spatial operation here reads
``coords``, so "neighbour" means neighbouring tissue, padding is never a neighbour, and the
pairwise work is done in row blocks so memory is O(M·k), not O(M·N) (DESIGN.md, "Scale notes").
"""

from __future__ import annotations

import torch
from torch import Tensor

_ELEMENT_BUDGET = 1 << 22
"""Distance-matrix elements per block (float64: 32 MiB); bounds peak memory of a kNN call."""

_TIE_EPS_UM2 = 1e-3
"""Tie-break added to squared distances (µm²): far below any real gap between tile distances."""

_R2 = (0.7548776662466927, 0.5698402909980532)
"""Generalised golden-ratio (R2) constants: a cheap hash of a position into [0, 1)."""


def block_rows(batch: int, n_keys: int, chunk_size: int | None = None) -> int:
    """Rows per block so that one [batch, rows, n_keys] distance block fits the budget."""
    if chunk_size is not None:
        return max(1, int(chunk_size))
    return max(1, _ELEMENT_BUDGET // max(1, batch * n_keys))


def _position_hash(xy: Tensor) -> Tensor:
    """A value in [0, 1) that depends only on a tile's own position.

    Why: real tiles sit on a lattice, so equal distances are everywhere (4 tiles at one
    spacing, 4 at √2 ...). ``topk`` breaks such ties by index, which would make the output
    depend on tile ORDER. Adding ``eps * hash(position)`` breaks them by position instead,
    which keeps every model permutation-equivariant over tiles.
    """
    return torch.frac(xy[..., 0] * _R2[0] + xy[..., 1] * _R2[1])


@torch.no_grad()
def knn_coords(
    query: Tensor,
    keys: Tensor,
    key_mask: Tensor,
    k: int,
    *,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """The k nearest real tiles to each query point, computed blockwise.

    Args:
        query: [B, M, 2] points in µm (may be anywhere, e.g. deformable sampling locations).
        keys: [B, N, 2] tile centres in µm.
        key_mask: [B, N] True for real tiles.
        k: neighbours wanted; ``min(k, N)`` are returned.
        chunk_size: query rows per block (default: fit ``_ELEMENT_BUDGET``).

    Returns:
        ``idx`` [B, M, k'] long, nearest first, and ``valid`` [B, M, k'] bool (False where
        fewer than k' real tiles exist; such slots point at an arbitrary tile).

    Distances are computed in float64 from explicit differences: the ``‖a‖²+‖b‖²-2ab`` form
    that ``cdist`` uses for large inputs cancels catastrophically for µm coordinates ~1e4-1e5.
    """
    b, m, _ = query.shape
    n = keys.shape[1]
    kk = min(int(k), n)
    q = query.detach().to(torch.float64)
    kx = keys.detach().to(torch.float64)
    bias = (_TIE_EPS_UM2 * _position_hash(kx)).masked_fill(~key_mask, float("inf"))
    rows = block_rows(b, n, chunk_size)
    idx_parts, val_parts = [], []
    for start in range(0, m, rows):
        qc = q[:, start : start + rows]
        d2 = (qc[..., 0, None] - kx[:, None, :, 0]).square()
        d2 += (qc[..., 1, None] - kx[:, None, :, 1]).square()
        d2 += bias[:, None, :]
        vals, idx = d2.topk(kk, dim=-1, largest=False, sorted=True)
        idx_parts.append(idx)
        val_parts.append(torch.isfinite(vals))
    return torch.cat(idx_parts, dim=1), torch.cat(val_parts, dim=1)


@torch.no_grad()
def estimate_spacing(probe_idx: Tensor, probe_valid: Tensor, coords: Tensor, mask: Tensor) -> Tensor:
    """Tile spacing per sample: median distance from probe tiles to their nearest other tile.

    Why estimate instead of configuring: the grid pitch differs per magnification (224 µm at
    10x, 112 µm at 20x) and per tiling config; the coordinates already say what it is.

    Args:
        probe_idx: [B, P] indices of real tiles to probe.
        probe_valid: [B, P] which probes are real.
        coords, mask: the tiles, [B, N, 2] and [B, N].

    Returns:
        [B] spacing in µm (1.0 where it cannot be measured: a single tile, duplicates only).
    """
    probes = coords.gather(1, probe_idx.unsqueeze(-1).expand(-1, -1, 2))
    idx, valid = knn_coords(probes, coords, mask, 2)
    if idx.shape[-1] < 2:
        return torch.ones(coords.shape[0], dtype=coords.dtype, device=coords.device)
    nearest = coords.gather(1, idx[..., 1:2].expand(-1, -1, 2))
    dist = (nearest - probes).norm(dim=-1)
    dist = dist.masked_fill(~(valid[..., 1] & probe_valid), float("nan"))
    spacing = torch.nanmedian(dist, dim=1).values
    ok = torch.isfinite(spacing) & (spacing > 0)
    return torch.where(ok, spacing, torch.ones_like(spacing))


def tent_weights(locs: Tensor, nbr_xy: Tensor, nbr_valid: Tensor, spacing: Tensor) -> Tensor:
    """Bilinear-like interpolation weights of sampling points over their nearest tiles.

    ``w_j = relu(1 - |dx_j|/s) * relu(1 - |dy_j|/s)`` is exactly bilinear interpolation when
    the neighbours are the 4 corners of the lattice cell around the point; missing tissue
    (no tile at a corner) drops out and the rest are renormalised. A point farther than one
    spacing from every tile snaps to its nearest tile (weight 1), so a sample never reads
    padding or empty glass. Differentiable w.r.t. ``locs``: this is how offsets learn.

    Args:
        locs: [B, S, 2] sampling points (µm), with gradient.
        nbr_xy: [B, S, k, 2] the k nearest tiles, nearest first.
        nbr_valid: [B, S, k] real neighbours.
        spacing: [B] tile pitch in µm.

    Returns:
        [B, S, k] weights summing to 1 over k.
    """
    rel = (locs.unsqueeze(2) - nbr_xy) / spacing.view(-1, 1, 1, 1)
    w = (1.0 - rel.abs()).clamp(min=0.0).prod(dim=-1) * nbr_valid
    total = w.sum(dim=-1, keepdim=True)
    snap = torch.zeros_like(w)
    snap[..., 0] = 1.0
    return torch.where(total > 0, w / total.clamp(min=1e-12), snap)
