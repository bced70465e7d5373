"""Teacher, student, their building blocks (grid, DPC-KNN, gating) and the registry."""

from __future__ import annotations

import math

import pytest
import torch

from duopath.models import MODELS, Student, StudentArch, Teacher, TeacherArch, build_model
from duopath.models.deformable import DeformableTileAttention
from duopath.models.gating import combine_experts, expert_confidence, survival_outcome_probs
from duopath.models.grid import estimate_spacing, knn_coords, tent_weights
from duopath.models.ita import dpc_knn, merge_tokens
from duopath.training.losses import igc_loss, survival_nll

D, G_T, G_E, B = 24, 10, 7, 2
MAGS = ("10x", "20x")
SMALL = {"dim": 16, "n_heads": 2}


def nested_batch(seed: int = 0, side: int = 4, n_real: tuple[int, ...] = (16, 11)) -> dict:
    """A 10x lattice (224 µm) with 2×2 nested 20x children (112 µm); sample b has n_real[b]
    real 10x tiles (the rest padding, with junk features)."""
    gen = torch.Generator().manual_seed(seed)
    ij = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij"), -1)
    c10 = (ij.reshape(-1, 2).float() + 0.5) * 224.0  # near (0, 0), where padding is zeroed
    kids = torch.tensor([[-56.0, -56.0], [-56.0, 56.0], [56.0, -56.0], [56.0, 56.0]])
    c20 = (c10[:, None, :] + kids[None]).reshape(-1, 2)
    parent = torch.arange(c10.shape[0]).repeat_interleave(4)
    n10 = c10.shape[0]
    mask10 = torch.stack([torch.arange(n10) < n for n in n_real])
    mask20 = mask10.repeat_interleave(4, dim=1)
    return {
        "feats": {
            "10x": torch.randn(B, n10, D, generator=gen),
            "20x": torch.randn(B, 4 * n10, D, generator=gen),
        },
        "mask": {"10x": mask10, "20x": mask20},
        "coords": {"10x": c10.expand(B, -1, -1).clone(), "20x": c20.expand(B, -1, -1).clone()},
        "parent": parent.expand(B, -1).masked_fill(~mask20, -1),
        "genes_T": torch.randn(B, G_T, generator=gen),
        "genes_E": torch.randn(B, G_E, generator=gen),
    }


def teacher(**kw: object) -> Teacher:
    args = {"feature_dim": D, "n_genes_T": G_T, "n_genes_E": G_E, "n_classes": 4, "gene_hidden": 32}
    return Teacher(TeacherArch(**{**args, **SMALL, **kw}))


def student(**kw: object) -> Student:
    return Student(StudentArch(**{"feature_dim": D, "n_classes": 4, **SMALL, **kw}))


def run_teacher(model: Teacher, batch: dict):
    return model(batch["feats"], batch["mask"], batch["coords"], batch["genes_T"], batch["genes_E"])


def pad(batch: dict, extra10: int = 3) -> dict:
    """Append padding tiles with junk features/coords (and their 2×2 children)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in batch.items()}
    for m, n in (("10x", extra10), ("20x", 4 * extra10)):
        out["feats"][m] = torch.cat([batch["feats"][m], torch.full((B, n, D), 9.0)], 1)
        out["coords"][m] = torch.cat([batch["coords"][m], torch.full((B, n, 2), 5000.0)], 1)
        out["mask"][m] = torch.cat([batch["mask"][m], torch.zeros(B, n, dtype=torch.bool)], 1)
    return out


# ------------------------------------------------------------------------- shapes / contract


@pytest.mark.parametrize("attention", ["deformable", "cross"])
@pytest.mark.parametrize("task", ["survival", "classification"])
def test_teacher_shapes_and_attention_maps(attention: str, task: str) -> None:
    torch.manual_seed(0)
    batch = nested_batch()
    model = teacher(attention=attention, task=task, n_gene_tokens=3).eval()
    out = run_teacher(model, batch)
    assert out.logits.shape == (B, 4) and out.gate_weights.shape == (B, 2)
    for m in MAGS:
        n = batch["mask"][m].shape[1]
        assert out.logits_by_mag[m].shape == (B, 4) and out.confidence[m].shape == (B,)
        for s in ("T", "E"):
            assert out.embeddings[m][s].shape == (B, 16)
            amap = out.attention[m][s]
            assert amap.shape == (B, 3, n)
            torch.testing.assert_close(amap.sum(-1), torch.ones(B, 3))
            assert (amap >= 0).all()
            assert amap.masked_select(~batch["mask"][m][:, None, :]).abs().max() == 0
        assert out.joint_embedding(m).shape == (B, 32)


@pytest.mark.parametrize(("task", "tile_attention"), [("survival", "knn"), ("classification", "full")])
def test_student_shapes(task: str, tile_attention: str) -> None:
    torch.manual_seed(0)
    batch = nested_batch()
    model = student(task=task, n_prototypes=3, tile_attention=tile_attention).eval()
    out = model(batch["feats"], batch["mask"], batch["coords"])
    assert out.logits.shape == (B, 4)
    for m in MAGS:
        n = batch["mask"][m].shape[1]
        assert out.prototypes[m].shape == (B, 3, 16) and out.prototype_mask[m].all()
        assert out.tile_weights[m].shape == (B, n)
        assert (out.clusters[m][~batch["mask"][m]] == -1).all()
        assert (out.clusters[m][batch["mask"][m]] >= 0).all()
        for s in ("T", "E"):
            assert out.embeddings[m][s].shape == (B, 16)
            torch.testing.assert_close(out.attention[m][s].sum(-1), torch.ones(B, 1))


def test_inputs_are_validated() -> None:
    batch = nested_batch()
    model = teacher().eval()
    bad = pad(batch)
    bad["mask"]["10x"] = bad["mask"]["10x"] & False
    with pytest.raises(ValueError, match="at least one real tile"):
        run_teacher(model, bad)
    with pytest.raises(ValueError, match="genes_T"):
        model(batch["feats"], batch["mask"], batch["coords"], batch["genes_T"][:, :3], batch["genes_E"])
    with pytest.raises(KeyError, match="20x"):
        model(
            {"10x": batch["feats"]["10x"]}, batch["mask"], batch["coords"], batch["genes_T"], batch["genes_E"]
        )
    with pytest.raises(ValueError, match="degenerate"):
        teacher(n_gene_tokens=1, gene_select_keys="own")
    teacher(n_gene_tokens=1, gene_select_keys="both")  # two keys: allowed


# ------------------------------------------------------------------------- invariances


@pytest.mark.parametrize("attention", ["deformable", "cross"])
def test_teacher_padding_does_not_change_outputs(attention: str) -> None:
    torch.manual_seed(0)
    batch = nested_batch()
    model = teacher(attention=attention).eval()
    base, padded = run_teacher(model, batch), run_teacher(model, pad(batch))
    torch.testing.assert_close(padded.logits, base.logits, atol=1e-5, rtol=1e-5)
    for m in MAGS:
        n = batch["mask"][m].shape[1]
        for s in ("T", "E"):
            extra = padded.attention[m][s][..., n:]
            assert extra.abs().max() == 0
            torch.testing.assert_close(
                padded.attention[m][s][..., :n], base.attention[m][s], atol=1e-6, rtol=1e-5
            )


@pytest.mark.parametrize("attention", ["deformable", "cross"])
def test_teacher_with_fewer_real_tiles_than_reference_points(attention: str) -> None:
    torch.manual_seed(0)
    batch = nested_batch(n_real=(16, 1))  # sample 1: one 10x tile, four 20x tiles; n_refs = 8
    out = run_teacher(teacher(attention=attention, n_refs=8).eval(), batch)
    assert torch.isfinite(out.logits).all()
    torch.testing.assert_close(out.attention["10x"]["T"][1, :, 0], torch.ones(4))
    assert out.attention["20x"]["E"][1, :, 4:].abs().max() == 0


def test_student_padding_and_tile_permutation_invariance() -> None:
    torch.manual_seed(0)
    batch = nested_batch(n_real=(16, 16))  # lattice coords: many equal-distance ties
    model = student(n_prototypes=2).eval()
    base = model(batch["feats"], batch["mask"], batch["coords"])
    padded = pad(batch)
    torch.testing.assert_close(model(padded["feats"], padded["mask"], padded["coords"]).logits, base.logits)
    gen = torch.Generator().manual_seed(3)
    perm = {m: torch.randperm(batch["mask"][m].shape[1], generator=gen) for m in MAGS}
    shuffled = model(
        {m: batch["feats"][m][:, perm[m]] for m in MAGS},
        {m: batch["mask"][m][:, perm[m]] for m in MAGS},
        {m: batch["coords"][m][:, perm[m]] for m in MAGS},
    )
    torch.testing.assert_close(shuffled.logits, base.logits, atol=1e-5, rtol=1e-5)
    for m in MAGS:
        torch.testing.assert_close(shuffled.tile_weights[m], base.tile_weights[m][:, perm[m]])
        torch.testing.assert_close(
            shuffled.attention[m]["T"], base.attention[m]["T"][..., perm[m]], atol=1e-6, rtol=1e-5
        )


def test_deformable_offsets_follow_tissue_scale_and_position() -> None:
    """Offsets are in tile spacings: scaling or shifting the slide leaves the output unchanged."""
    torch.manual_seed(0)
    attn = DeformableTileAttention(16, n_heads=2, n_refs=3, n_points=3, n_interp=4).eval()
    with torch.no_grad():
        attn.offset.weight.normal_(0, 0.5)  # non-trivial, content-dependent offsets
    batch = nested_batch()
    q = torch.randn(B, 2, 16)
    tiles = torch.randn(B, 64, 16)
    mask, xy = batch["mask"]["20x"], batch["coords"]["20x"]
    out, amap = attn(q, tiles, mask, xy)
    for moved in (xy * 2.0, xy + torch.tensor([31337.0, -1234.0])):
        out2, amap2 = attn(q, tiles, mask, moved)
        torch.testing.assert_close(out2, out, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(amap2, amap, atol=2e-5, rtol=1e-4)  # float32 µm shifts
    # an offset predictor that ignores content still moves samples: the map spreads beyond refs
    assert ((amap > 0).sum(-1) > 3).all()


# ------------------------------------------------------------------------- grid helpers


def test_knn_blockwise_matches_bruteforce_and_breaks_ties_by_position() -> None:
    batch = nested_batch()
    xy, mask = batch["coords"]["20x"], batch["mask"]["20x"]
    idx, valid = knn_coords(xy, xy, mask, 9, chunk_size=7)
    idx_big, _ = knn_coords(xy, xy, mask, 9)
    assert torch.equal(idx, idx_big) and valid.all()
    d = torch.cdist(xy.double(), xy.double()).masked_fill(~mask[:, None, :], float("inf"))
    got = d.gather(2, idx)
    torch.testing.assert_close(got, d.sort(-1).values[..., :9])
    assert not mask.gather(1, idx.flatten(1)).logical_not().any()
    perm = torch.randperm(xy.shape[1], generator=torch.Generator().manual_seed(0))
    idx_p, _ = knn_coords(xy[:, perm], xy[:, perm], mask[:, perm], 9)
    assert torch.equal(perm[idx_p], idx[:, perm])  # same neighbour SETS, same order


def test_tent_weights_are_bilinear_and_snap_off_tissue() -> None:
    tiles = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    locs = torch.tensor([[[5.0, 5.0], [2.0, 0.0], [100.0, 100.0]]])
    idx, valid = knn_coords(locs, tiles, mask, 4)
    w = tent_weights(locs, tiles[0][idx], valid, torch.tensor([10.0]))
    dense = torch.zeros(3, 4).scatter_add(1, idx[0], w[0])
    torch.testing.assert_close(dense[0], torch.full((4,), 0.25))
    torch.testing.assert_close(dense[1], torch.tensor([0.8, 0.2, 0.0, 0.0]))
    torch.testing.assert_close(dense[2], torch.tensor([0.0, 0.0, 0.0, 1.0]))
    spacing = estimate_spacing(torch.arange(4)[None], mask, tiles, mask)
    torch.testing.assert_close(spacing, torch.tensor([10.0]))


# ------------------------------------------------------------------------- DPC-KNN / ITA


def test_dpc_knn_recovers_separated_clusters_and_ignores_padding() -> None:
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0] * 8, [10.0] * 8, [-10.0] * 4 + [10.0] * 4])
    sizes = (12, 9, 7)  # each > k + 1: a smaller group has no kNN density of its own
    pts = torch.cat([c + 0.3 * torch.randn(n, 8, generator=gen) for c, n in zip(centres, sizes, strict=True)])
    truth = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)])
    perm = torch.randperm(pts.shape[0], generator=gen)
    x = torch.cat([pts[perm], torch.full((6, 8), 100.0)])[None]  # + 6 far-away padding rows
    mask = torch.arange(x.shape[1])[None] < pts.shape[0]
    res = dpc_knn(x, mask, n_clusters=3, k=5, chunk_size=5)
    assign = res.assign[0, : pts.shape[0]]
    t = truth[perm]
    for c in range(3):  # a bijection between true clusters and found clusters
        assert assign[t == c].unique().numel() == 1
    assert assign.unique().numel() == 3 and (res.assign[0, pts.shape[0] :] == -1).all()
    # more clusters than real tokens: extra centres invalid, merge leaves them empty
    small = dpc_knn(x[:, :2], torch.ones(1, 2, dtype=torch.bool), n_clusters=4)
    assert small.center_valid.tolist() == [[True, True, False, False]]
    protos, mass = merge_tokens(x[:, :2], torch.ones(1, 2), small.assign, 4)
    assert (mass[0, 2:] == 0).all() and protos.shape == (1, 4, 8)


def test_merge_is_omega_weighted_mean() -> None:
    x = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]]])
    w = torch.tensor([[1.0, 3.0, 2.0]])
    protos, mass = merge_tokens(x, w, torch.tensor([[0, 0, 1]]), 2)
    torch.testing.assert_close(protos[0], torch.tensor([[2.5, 1.5], [5.0, 5.0]]))
    torch.testing.assert_close(mass[0], torch.tensor([4.0, 2.0]))


# ------------------------------------------------------------------------- gating


def test_survival_outcome_probs_and_confidence() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)]])  # h = [.5, .75]
    probs = survival_outcome_probs(logits)
    torch.testing.assert_close(probs, torch.tensor([[0.5, 0.375, 0.125]]))
    torch.testing.assert_close(expert_confidence(logits, "survival"), torch.tensor([0.5]))
    cls = torch.tensor([[0.0, math.log(3.0)]])
    torch.testing.assert_close(expert_confidence(cls, "classification"), torch.tensor([0.75]))


def test_gating_modes() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[3.0, 1.0], [4.0, 4.0]])
    conf = [torch.tensor([0.9, 0.2]), torch.tensor([0.6, 0.7])]
    gated, w = combine_experts([a, b], conf, "max_confidence")
    torch.testing.assert_close(gated, torch.tensor([[1.0, 0.0], [4.0, 4.0]]))
    torch.testing.assert_close(w, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    gated, _ = combine_experts([a, b], conf, "mean")
    torch.testing.assert_close(gated, (a + b) / 2)
    gated, w = combine_experts([a, b], conf, "softmax", temperature=0.5)
    w0 = 1 / (1 + math.exp((0.6 - 0.9) / 0.5))
    torch.testing.assert_close(w[0], torch.tensor([w0, 1 - w0]))
    torch.testing.assert_close(gated[0], w0 * a[0] + (1 - w0) * b[0])
    with pytest.raises(ValueError, match="gating"):
        combine_experts([a, b], conf, "vote")


def test_model_gate_picks_most_confident_expert() -> None:
    torch.manual_seed(0)
    batch = nested_batch()
    model = teacher(task="classification", gating="max_confidence").eval()
    out = run_teacher(model, batch)
    conf = torch.stack([out.confidence[m] for m in MAGS], 1)
    pick = conf.argmax(1)
    for i in range(B):
        torch.testing.assert_close(out.logits[i], out.logits_by_mag[MAGS[pick[i]]][i])


# ------------------------------------------------------------------------- ablations


def test_ablation_switches() -> None:
    torch.manual_seed(0)
    batch = nested_batch()
    single = teacher(magnifications=("20x",)).eval()
    out = run_teacher(single, batch)  # 10x inputs present but ignored
    assert list(out.logits_by_mag) == ["20x"] and out.gate_weights.shape == (B, 1)
    torch.testing.assert_close(out.logits, out.logits_by_mag["20x"])

    joint = teacher(disentangle=False).eval()
    assert joint.gene_encoders["T"].snn[0][0].in_features == G_T + G_E
    run_teacher(joint, batch)

    mean_t, mean_e = torch.zeros(G_T), torch.ones(G_E)
    no_rna = teacher(rna_mean_T=mean_t, rna_mean_E=mean_e).eval()
    first = run_teacher(no_rna, batch).logits
    other = dict(batch, genes_T=torch.randn(B, G_T) * 5, genes_E=torch.randn(B, G_E) * 5)
    torch.testing.assert_close(run_teacher(no_rna, other).logits, first)
    with_rna = teacher().eval()
    assert not torch.allclose(run_teacher(with_rna, other).logits, run_teacher(with_rna, batch).logits)


# ------------------------------------------------------------------------- training signals


def _assert_all_grads(model: torch.nn.Module) -> None:
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing}"


def test_gradient_reaches_every_teacher_parameter() -> None:
    torch.manual_seed(0)
    batch = nested_batch()
    model = teacher(attention="deformable", dropout=0.1).train()
    out = run_teacher(model, batch)
    bins, events = torch.tensor([1, 3]), torch.tensor([1, 0])
    loss = sum(survival_nll(out.logits_by_mag[m], bins, events) for m in MAGS)
    loss = loss + igc_loss(out, batch["parent"], batch["mask"], kind="spatial")
    loss.backward()
    _assert_all_grads(model)


def test_gradient_reaches_every_student_parameter() -> None:
    torch.manual_seed(0)
    batch = nested_batch()
    model = student(task="classification", dropout=0.1).train()
    out = model(batch["feats"], batch["mask"], batch["coords"])
    loss = sum(torch.nn.functional.cross_entropy(out.logits_by_mag[m], torch.tensor([0, 2])) for m in MAGS)
    loss.backward()
    _assert_all_grads(model)


def test_fixed_seed_is_deterministic_in_train_mode() -> None:
    batch = nested_batch()
    results = []
    for _ in range(2):
        torch.manual_seed(123)
        t = teacher(dropout=0.2).train()
        s = student(dropout=0.2).train()
        results.append(
            (run_teacher(t, batch).logits, s(batch["feats"], batch["mask"], batch["coords"]).logits)
        )
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=0)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=0, atol=0)
    torch.manual_seed(124)
    assert not torch.equal(run_teacher(teacher(dropout=0.2).train(), batch).logits, results[0][0])


def test_registry_builds_from_plain_kwargs() -> None:
    assert {"teacher", "student"} <= set(MODELS)
    cfg = {
        "feature_dim": D,
        "n_genes_T": G_T,
        "n_genes_E": G_E,
        "n_classes": 3,
        "dim": 16,
        "n_heads": 2,
        "magnifications": ["20x"],
        "attention": "cross",
        "task": "classification",
    }
    model = build_model("teacher", cfg)
    assert isinstance(model, Teacher) and model.magnifications == ("20x",)
    assert isinstance(build_model("student", {"feature_dim": D, "n_classes": 3}), Student)
    with pytest.raises(KeyError, match="known"):
        build_model("clam_sb", {})
    with pytest.raises(TypeError, match="n_layers"):
        build_model("student", {"feature_dim": D, "n_classes": 3, "n_layers": 2})


def test_student_pooling_sees_tissue_composition() -> None:
    """Two slides made of the same two tissue types in different shares must not pool to the same
    embedding: each prototype's pooling score carries its cluster's ω mass (the composition)."""
    from duopath.models.student import StudentExpert

    torch.manual_seed(0)
    expert = StudentExpert(D, 16, 2, "full", 9, 2, 5, 0.0, 10.0).eval()

    class NoContext(torch.nn.Module):  # isolate the pooling: no tile-to-tile mixing
        def forward(self, x: torch.Tensor, *_: object) -> torch.Tensor:
            return torch.zeros_like(x)

    expert.context = NoContext()
    a, b = torch.randn(D) * 3, torch.randn(D) * 3
    n = 40

    def slide(share: float) -> torch.Tensor:
        k = int(share * n)
        x = torch.cat([a.expand(k, D), b.expand(n - k, D)]) + 0.01 * torch.randn(n, D)
        return x[None]

    mask = torch.ones(1, n, dtype=torch.bool)
    xy = torch.stack(torch.meshgrid(torch.arange(8.0), torch.arange(5.0), indexing="ij"), -1).reshape(1, n, 2)
    with torch.no_grad():
        low, high = expert(slide(0.2), mask, xy), expert(slide(0.8), mask, xy)
    assert (low["embedding"] - high["embedding"]).abs().max() > 1e-2
