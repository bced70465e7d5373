"""Histology-only MIL baselines: ABMIL and TransMIL (DESIGN.md, "Baselines").

Both build ONE expert per magnification (own tile projection, pooling and head) and gate the
experts per sample exactly as the teacher and student do (``gating.combine_experts``), so the
comparison with the dual-magnification models is like for like. Genes are ignored.
Constructor: the shared baseline architecture (``arch.BaselineArch``).

Outputs per magnification m: ``embeddings[m]["pooled"]`` [B, d] (the head input) and
``attention[m]["pooled"]`` [B, 1, N_m], a distribution over real tiles (zero on padding).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from duopath.models.arch import BaselineArch
from duopath.models.baseline_common import AttentionMILBranch, Baseline, TransformerLayer
from duopath.models.contract import ModelOutput
from duopath.models.grid import estimate_spacing

MAX_GRID_CELLS = 1 << 20
"""Largest tile grid (rows × cols) the positional encoding builds for one bag (d floats per
cell). A real slide's tissue bounding box stays far below this at any tiling spacing; a bigger
grid means the coordinates or the spacing estimate are wrong."""

_N_PROBES = 64
"""Tiles probed per bag to estimate the tile spacing (``grid.estimate_spacing``)."""


class SlideOnly(Baseline):
    """A histology-only baseline: one ``branches[m]`` expert per magnification (tiles, mask and
    coords → pooled [B, d], attention [B, 1, N]) and a Linear(d→C) head each; genes ignored.
    Subclasses say which expert by defining ``_branch() -> nn.Module``."""

    _branch: Callable[[], nn.Module]

    def __init__(self, arch: BaselineArch) -> None:
        super().__init__(arch)
        self.branches = nn.ModuleDict({m: self._branch() for m in self.magnifications})
        self.heads = self.make_heads(self.dim)

    def forward(
        self,
        feats: Mapping[str, Tensor],
        mask: Mapping[str, Tensor],
        coords: Mapping[str, Tensor],
        genes_T: Tensor | None = None,  # noqa: N803 - T/E are the paper's subspace names
        genes_E: Tensor | None = None,  # noqa: N803
    ) -> ModelOutput:
        """Run every magnification's expert and gate them (genes are ignored)."""
        del genes_T, genes_E
        logits, embeddings, attention = {}, {}, {}
        for m in self.magnifications:
            x, msk, xy = self.tiles(m, feats, mask, coords)
            pooled, amap = self.branches[m](x, msk, xy)
            logits[m] = self.heads[m](pooled)
            embeddings[m], attention[m] = {"pooled": pooled}, {"pooled": amap}
        return self.gated_output(logits, embeddings, attention)


class ABMIL(SlideOnly):
    """Ilse et al. 2018 gated-attention MIL, one expert per magnification.

    Tiles → Linear(D→d) + GELU + Dropout → a = softmax over real tiles of
    wᵀ(tanh(V h) ⊙ sigmoid(U h)) → pooled = Σ a h → head Linear(d→C).
    """

    def _branch(self) -> nn.Module:
        return AttentionMILBranch(self.feature_dim, self.dim, self.dropout)


@torch.no_grad()
def tile_spacing(coords: Tensor, mask: Tensor, n_probes: int = _N_PROBES) -> Tensor:
    """[B] tile pitch in µm, from up to ``n_probes`` real tiles per bag.

    The probes are spread evenly over the real tiles sorted by (x, y), so the choice depends
    on where tiles are, not on their order in the bag (keeps the model permutation-invariant).
    """
    big = torch.finfo(coords.dtype).max
    x = coords[..., 0].masked_fill(~mask, big)
    y = coords[..., 1].masked_fill(~mask, big)
    by_y = torch.argsort(y, dim=1, stable=True)
    order = by_y.gather(1, torch.argsort(x.gather(1, by_y), dim=1, stable=True))
    n_real = mask.sum(dim=1, keepdim=True)
    p = min(n_probes, mask.shape[1])
    pos = torch.arange(p, device=mask.device)[None] * n_real // p
    probes = order.gather(1, pos)
    return estimate_spacing(probes, torch.ones_like(probes, dtype=torch.bool), coords, mask)


@torch.no_grad()
def grid_cells(xy: Tensor, spacing: Tensor) -> tuple[Tensor, int, int]:
    """Real tiles' centres [n, 2] (µm) → flat cell index [n] on their integer grid, rows, cols.

    Row = y, column = x, both ``round((c - min c) / spacing)``: the tissue's bounding box in
    tile units, so neighbouring tissue is neighbouring in the grid and gaps stay empty.
    """
    ij = torch.round((xy - xy.amin(dim=0)) / spacing).long()
    cols, rows = int(ij[:, 0].max()) + 1, int(ij[:, 1].max()) + 1
    if rows * cols > MAX_GRID_CELLS:
        raise ValueError(
            f"tile grid of {rows}×{cols} cells at a spacing of {float(spacing):.3g} µm exceeds "
            f"{MAX_GRID_CELLS} cells: the coordinates or the tile spacing look wrong"
        )
    return ij[:, 1] * cols + ij[:, 0], rows, cols


class GridPositionEncoding(nn.Module):
    """PPEG on the REAL tile layout: depthwise 7×7 + 5×5 + 3×3 convolutions over the tile grid.

    Per bag: real tokens are scattered onto their integer grid cells (from ``coords`` and the
    estimated spacing; tiles sharing a cell are averaged; empty cells and padding are zero),
    the three depthwise convolutions are summed, and each tile gets back ``token + conv sum``
    at its own cell. TransMIL's reference reshapes the bag into a square pseudo-grid in bag
    order instead, which has nothing to do with where the tissue is (DESIGN.md, "Known
    defects"). Bags are processed one at a time (B is small); tiles are never looped over.
    """

    def __init__(self, dim: int, kernels: tuple[int, ...] = (7, 5, 3)) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(dim, dim, k, padding=k // 2, groups=dim) for k in kernels)

    def forward(self, tokens: Tensor, mask: Tensor, coords: Tensor) -> Tensor:
        """``tokens`` [B, N, d], ``mask`` [B, N], ``coords`` [B, N, 2] µm → [B, N, d]."""
        spacing = tile_spacing(coords, mask)
        dim = tokens.shape[-1]
        out = []
        for b in range(tokens.shape[0]):
            idx = mask[b].nonzero().squeeze(1)
            tok = tokens[b].index_select(0, idx)
            cell, rows, cols = grid_cells(coords[b].index_select(0, idx), spacing[b])
            total = tok.new_zeros(rows * cols, dim).index_add(0, cell, tok)
            count = tok.new_zeros(rows * cols).index_add(0, cell, torch.ones_like(cell, dtype=tok.dtype))
            grid = (total / count.clamp(min=1.0).unsqueeze(1)).T.reshape(1, dim, rows, cols)
            enc = torch.stack([conv(grid) for conv in self.convs]).sum(dim=0)
            enc = enc.reshape(dim, rows * cols).T.index_select(0, cell)
            out.append(tokens[b].index_copy(0, idx, tok + enc))
        return torch.stack(out)


class TransMILExpert(nn.Module):
    """One magnification's TransMIL branch up to the CLS embedding and CLS→tile attention."""

    def __init__(self, feature_dim: int, dim: int, n_heads: int, n_layers: int, dropout: float) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(feature_dim, dim), nn.GELU(), nn.Dropout(dropout))
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.layers = nn.ModuleList(TransformerLayer(dim, n_heads, dropout) for _ in range(n_layers))
        self.pos = GridPositionEncoding(dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, mask: Tensor, coords: Tensor) -> tuple[Tensor, Tensor]:
        """Tiles [B, N, D] → CLS embedding [B, d], last layer's CLS attention [B, 1, N]."""
        tiles = self.proj(x)
        cls_col = mask.new_ones(mask.shape[0], 1)
        key_mask = torch.cat([cls_col, mask], dim=1)
        tiles_only = torch.cat([~cls_col, mask], dim=1)
        depth = len(self.layers)
        if depth == 1:  # the encoding must come before a layer to reach the CLS token
            tiles = self.pos(tiles, mask, coords)
        h = torch.cat([self.cls.expand(x.shape[0], -1, -1).to(tiles.dtype), tiles], dim=1)
        weights: Tensor | None = None
        for i, layer in enumerate(self.layers):
            h, weights = layer(h, key_mask, tiles_only if i == depth - 1 else None)
            if i == 0 and depth > 1:  # TransMIL's order: layer → PPEG → remaining layers
                h = torch.cat([h[:, :1], self.pos(h[:, 1:], mask, coords)], dim=1)
        assert weights is not None
        return self.norm(h[:, 0]), weights[..., 1:]


class TransMIL(SlideOnly):
    """Shao et al. 2021 TransMIL, one expert per magnification.

    Tiles → Linear(D→d) + GELU + Dropout; a CLS token; ``n_layers`` pre-norm transformer layers
    with masked multi-head self-attention; after the first layer (before it when
    ``n_layers == 1``) the PPEG-style ``GridPositionEncoding`` on the real tile grid; head
    Linear(d→C) on the LayerNorm'd CLS token. Attention is EXACT softmax attention (SDPA with
    a key-padding mask), not the reference's Nyström approximation: O(N²) work, which is fine
    for bags up to a few thousand tiles (flash / memory-efficient kernels on GPU).
    ``attention[m]["pooled"]`` is the last layer's CLS → tile attention (softmax over real
    tiles only, CLS self-attention excluded), averaged over heads.
    Position enters only through ``coords``: permuting tiles together with their coordinates
    leaves the output unchanged.
    """

    def _branch(self) -> nn.Module:
        return TransMILExpert(self.feature_dim, self.dim, self.n_heads, self.n_layers, self.dropout)
