"""Comparison baselines (ABMIL, TransMIL, SNN, concat / bilinear fusion, MCAT): the model contract."""

from __future__ import annotations

import pytest
import torch

from duopath.models import BASELINES, MODELS, build_model
from duopath.models.baselines_wsi import MAX_GRID_CELLS, grid_cells, tile_spacing

D, G_T, G_E, B, C, DIM = 16, 5, 6, 3, 4, 8
MAGS = {"10x": (7, 224.0, (7, 5, 2)), "20x": (13, 112.0, (13, 8, 3))}  # N, pitch µm, real per sample
KWARGS = {
    "feature_dim": D, "n_genes_T": G_T, "n_genes_E": G_E, "n_classes": C, "dim": DIM, "n_heads": 2,
    "n_layers": 2, "gene_hidden": 12, "n_gene_tokens": 3, "dropout": 0.25,
}
HISTOLOGY = ("abmil", "transmil", "concat", "bilinear", "mcat")
WSI_ONLY = ("abmil", "transmil")
RNA = ("snn", "concat", "bilinear", "mcat")


def make_batch(seed: int = 0) -> dict:
    """Real tiles on a 6×6 lattice with gaps (far from the origin), scattered among padding
    slots (masks are not a prefix); padding holds junk features and coordinates."""
    gen = torch.Generator().manual_seed(seed)
    feats, mask, coords = {}, {}, {}
    for m, (n, pitch, reals) in MAGS.items():
        msk = torch.zeros(B, n, dtype=torch.bool)
        xy = torch.full((B, n, 2), -777.0)
        for b, r in enumerate(reals):
            cells = torch.randperm(36, generator=gen)[:r]
            slots = torch.randperm(n, generator=gen)[:r]
            msk[b, slots] = True
            xy[b, slots] = torch.stack([cells % 6, cells // 6], -1).float() * pitch + 30000.0 + pitch / 2
        f = torch.randn(B, n, D, generator=gen).masked_fill(~msk[..., None], 5.0)
        feats[m], mask[m], coords[m] = f, msk, xy
    return {
        "feats": feats, "mask": mask, "coords": coords,
        "genes_T": torch.randn(B, G_T, generator=gen), "genes_E": torch.randn(B, G_E, generator=gen),
    }


def build(name: str, seed: int = 0, **kw: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(name, {**KWARGS, **kw})


def run(model: torch.nn.Module, batch: dict, genes: bool = True):
    g = (batch["genes_T"], batch["genes_E"]) if genes else (None, None)
    return model(batch["feats"], batch["mask"], batch["coords"], *g)


def test_registry_and_shared_kwargs() -> None:
    assert set(BASELINES) == {"abmil", "transmil", "snn", "concat", "bilinear", "mcat"} <= set(MODELS)
    for name in BASELINES:
        model = build(name)  # one kwargs dict builds every baseline
        assert model.task == "survival" and model.n_classes == C and model.feature_dim == D
        assert isinstance(model.heads, torch.nn.ModuleDict) and tuple(model.heads) == model.expert_names
        assert model.magnifications == (() if name == "snn" else tuple(MAGS))


@pytest.mark.parametrize("task", ["survival", "classification"])
@pytest.mark.parametrize("name", BASELINES)
def test_shapes_and_attention_maps(name: str, task: str) -> None:
    batch = make_batch()
    model = build(name, task=task).eval()
    out = run(model, batch)
    assert out.logits.shape == (B, C) and torch.isfinite(out.logits).all()
    assert set(out.logits_by_mag) == set(model.expert_names) == set(out.confidence)
    assert out.gate_weights.shape == (B, len(model.expert_names))
    assert torch.allclose(out.gate_weights.sum(1), torch.ones(B))
    for k in model.expert_names:
        assert out.logits_by_mag[k].shape == (B, C) and out.confidence[k].shape == (B,)
        assert out.embeddings[k]["pooled"].shape == (B, DIM)
    if name == "snn":
        assert out.attention == {} and torch.equal(out.gate_weights, torch.ones(B, 1))
        assert torch.equal(out.logits, out.logits_by_mag["rna"])
        return
    expected = {"pooled", "T", "E"} if name == "mcat" else {"pooled"}
    for m, (n, _, _) in MAGS.items():
        assert set(out.attention[m]) == expected
        real = batch["mask"][m][:, None, :]
        for amap in out.attention[m].values():
            assert amap.shape == (B, 1, n)
            assert torch.allclose(amap.sum(-1), torch.ones(B, 1), atol=1e-5)
            assert (amap.masked_select(~real) == 0).all() and (amap >= 0).all()


@pytest.mark.parametrize("name", HISTOLOGY)
def test_padding_never_matters(name: str) -> None:
    batch = make_batch()
    model = build(name).eval()
    with torch.no_grad():
        ref = run(model, batch)
        for m in MAGS:
            pad = ~batch["mask"][m]
            batch["feats"][m][pad] = float("nan")
            batch["coords"][m][pad] = 1e9
        out = run(model, batch)
    assert torch.allclose(out.logits, ref.logits, atol=1e-6)
    for m in MAGS:
        assert torch.allclose(out.attention[m]["pooled"], ref.attention[m]["pooled"], atol=1e-6)


@pytest.mark.parametrize("name", HISTOLOGY)
def test_permuting_tiles_with_their_coords_changes_nothing(name: str) -> None:
    batch = make_batch()
    model = build(name).eval()
    gen = torch.Generator().manual_seed(7)
    perms = {
        m: torch.stack([torch.randperm(n, generator=gen) for _ in range(B)])
        for m, (n, *_) in MAGS.items()
    }
    shuffled = dict(batch)
    for key in ("feats", "mask", "coords"):
        shuffled[key] = {}
        for m, p in perms.items():
            t = batch[key][m]
            idx = p if t.dim() == 2 else p[..., None].expand(-1, -1, t.shape[-1])
            shuffled[key][m] = t.gather(1, idx)
    with torch.no_grad():
        ref, out = run(model, batch), run(model, shuffled)
    assert torch.allclose(out.logits, ref.logits, atol=1e-5)
    for m, p in perms.items():
        for k, amap in ref.attention[m].items():
            assert torch.allclose(out.attention[m][k], amap.gather(2, p[:, None, :]), atol=1e-5)


@pytest.mark.parametrize("name", WSI_ONLY)
def test_wsi_only_models_ignore_genes(name: str) -> None:
    batch = make_batch()
    model = build(name).eval()
    with torch.no_grad():
        assert torch.equal(run(model, batch, genes=False).logits, run(model, batch).logits)


@pytest.mark.parametrize("name", RNA)
def test_rna_models_need_well_shaped_genes(name: str) -> None:
    batch = make_batch()
    model = build(name).eval()
    f, msk, xy = batch["feats"], batch["mask"], batch["coords"]
    with pytest.raises(ValueError, match="genes_T"):
        model(f, msk, xy, None, batch["genes_E"])
    with pytest.raises(ValueError, match="genes_E"):
        model(f, msk, xy, batch["genes_T"], None)
    with pytest.raises(ValueError, match="genes_E"):
        model(f, msk, xy, batch["genes_T"], batch["genes_E"][:, :-1])
    with pytest.raises(ValueError, match="genes_T"):
        model(f, msk, xy, batch["genes_T"][:, None], batch["genes_E"])
    if name != "snn":  # tiles and genes must agree on the batch size
        with pytest.raises(ValueError, match="genes_T"):
            model(f, msk, xy, batch["genes_T"][:2], batch["genes_E"][:2])


@pytest.mark.parametrize(("name", "extra"), [(n, {}) for n in BASELINES] + [("transmil", {"n_layers": 1})])
def test_gradients_reach_every_parameter(name: str, extra: dict) -> None:
    model = build(name, **extra).train()
    out = run(model, make_batch())
    loss = out.logits.sum() + sum(v.square().sum() for v in out.logits_by_mag.values())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", BASELINES)
def test_state_dict_round_trip(name: str) -> None:
    batch = make_batch()
    a = build(name, seed=0).eval()
    b = build(name, seed=1).eval()
    with torch.no_grad():
        assert not torch.allclose(run(a, batch).logits, run(b, batch).logits)
        b.load_state_dict(a.state_dict())
        assert torch.equal(run(a, batch).logits, run(b, batch).logits)


@pytest.mark.parametrize("gating", ["mean", "softmax"])
def test_other_gating_modes(gating: str) -> None:
    out = run(build("abmil", gating=gating, gating_temperature=0.5).eval(), make_batch())
    if gating == "mean":
        assert torch.allclose(out.gate_weights, torch.full((B, 2), 0.5))
        assert torch.allclose(out.logits, (out.logits_by_mag["10x"] + out.logits_by_mag["20x"]) / 2)
    assert torch.allclose(out.gate_weights.sum(1), torch.ones(B))


def test_single_magnification() -> None:
    batch = make_batch()
    for name in HISTOLOGY:
        out = run(build(name, magnifications=("20x",)).eval(), batch)
        assert set(out.logits_by_mag) == {"20x"} and torch.equal(out.logits, out.logits_by_mag["20x"])


@pytest.mark.parametrize(
    ("kw", "error"),
    [
        ({"task": "regression"}, ValueError),
        ({"gating": "vote"}, ValueError),
        ({"gating_temperature": 0.0}, ValueError),
        ({"dim": 9}, ValueError),  # not divisible by n_heads
        ({"n_layers": 0}, ValueError),
        ({"dropout": 1.0}, ValueError),
        ({"magnifications": ()}, ValueError),
        ({"task": "classification", "n_classes": 1}, ValueError),
        ({"n_refs": 8}, TypeError),  # a teacher-only argument
    ],
)
def test_constructor_validation(kw: dict, error: type) -> None:
    for name in BASELINES:
        with pytest.raises(error):
            build(name, **kw)


def test_gene_counts_only_matter_for_rna_models() -> None:
    build("abmil", n_genes_T=0, n_genes_E=0)
    build("transmil", n_genes_T=0, n_genes_E=0)
    for name in RNA:
        with pytest.raises(ValueError, match="n_genes_T"):
            build(name, n_genes_T=0)


# ------------------------------------------------------------- TransMIL's real-grid position encoding


def test_grid_cells_follow_the_real_layout() -> None:
    xy = torch.tensor([[1000.0, 500.0], [1224.0, 500.0], [1672.0, 724.0], [1000.0, 948.0]])
    cell, rows, cols = grid_cells(xy, torch.tensor(224.0))
    assert (rows, cols) == (3, 4)
    assert cell.tolist() == [0, 1, 1 * 4 + 3, 2 * 4 + 0]
    mask = torch.ones(1, 4, dtype=torch.bool)
    assert torch.allclose(tile_spacing(xy[None], mask), torch.tensor([224.0]))
    with pytest.raises(ValueError, match="tile grid"):
        far = torch.tensor([[0.0, 0.0], [224.0, 0.0], [1e6, 1e6]])
        assert MAX_GRID_CELLS**0.5 < 1e6 / 224
        grid_cells(far, torch.tensor(224.0))


def test_transmil_position_comes_from_coords_only() -> None:
    batch = make_batch()
    model = build("transmil").eval()

    def with_coords(fn) -> dict:
        return {**batch, "coords": {m: fn(m, xy) for m, xy in batch["coords"].items()}}

    with torch.no_grad():
        def logits20(b: dict) -> torch.Tensor:
            return run(model, b).logits_by_mag["20x"]

        ref = logits20(batch)
        shifted = logits20(with_coords(lambda m, xy: xy + torch.tensor([1234.0, -567.0])))
        scaled = logits20(with_coords(lambda m, xy: xy * 2.0))  # the spacing is re-estimated

        def move_one(m: str, xy: torch.Tensor) -> torch.Tensor:
            xy = xy.clone()
            if m == "20x":  # sample 0's first real tile jumps 3 cells away
                i = int(batch["mask"][m][0].nonzero()[0])
                xy[0, i] += 3 * MAGS[m][1]
            return xy

        moved = logits20(with_coords(move_one))
    assert torch.allclose(shifted, ref, atol=1e-5) and torch.allclose(scaled, ref, atol=1e-5)
    assert not torch.allclose(moved[0], ref[0], atol=1e-5)
    assert torch.allclose(moved[1:], ref[1:], atol=1e-6)
