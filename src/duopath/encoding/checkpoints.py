"""Checkpoint files for the tile-encoder registry: identity, reading, key matching, verification.

Separate from ``registry.py`` because none of it is model-specific: the same rules apply to a
UNI ``pytorch_model.bin``, a Virchow2 ``model.safetensors`` and a DDP training checkpoint.

Fingerprints (``weights_id`` in every feature store): ``sha256:<hex>`` of the whole file up
to 256 MiB; above that ``fp:<hex>`` = sha256 over ``b"duopath-fp-v1"``, the file size as 8
little-endian bytes, the first 16 MiB and the last 16 MiB. Hashing a 4 GB ViT-g checkpoint
in full would add about a minute to every extraction job; the sampled form still changes
when the file is re-exported, truncated or replaced by another model.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

FULL_HASH_MAX_BYTES = 256 * 2**20
FP_CHUNK_BYTES = 16 * 2**20
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")

# Training checkpoints nest the weights under one of these keys (possibly twice).
_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "module", "network")
# Wrapper prefixes: DDP, torch.compile, Lightning / timm-wrapped / open_clip-style towers.
_STRIP_PREFIXES = ("module.", "_orig_mod.", "model.", "backbone.", "encoder.", "visual.", "trunk.")


class EncoderError(RuntimeError):
    """An encoder cannot be built: unknown name, weights missing, or checkpoint mismatch."""


def file_fingerprint(path: Path, *, full_hash_max: int = FULL_HASH_MAX_BYTES) -> str:
    """``sha256:<hex>`` of the file, or the sampled ``fp:<hex>`` above ``full_hash_max`` bytes."""
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256()
    with path.open("rb") as f:
        if size <= full_hash_max:
            for block in iter(lambda: f.read(2**20), b""):
                h.update(block)
            return f"sha256:{h.hexdigest()}"
        h.update(b"duopath-fp-v1")
        h.update(size.to_bytes(8, "little"))
        h.update(f.read(FP_CHUNK_BYTES))
        f.seek(max(size - FP_CHUNK_BYTES, 0))
        h.update(f.read(FP_CHUNK_BYTES))
    return f"fp:{h.hexdigest()}"


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors/.bin/.pth file, unwrapped from training-checkpoint dicts.

    Pickles are read with ``weights_only=True`` (no arbitrary code from a downloaded file) and
    memory-mapped when the format allows, so a multi-GB checkpoint is not copied into RAM
    before the model adopts its tensors.
    """
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:  # legacy (pre-zip) serialisation cannot be memory-mapped
            if "mmap" not in str(e):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise EncoderError(
            f"cannot read {path} as a weights-only checkpoint ({type(e).__name__}: {e}). duopath "
            "does not unpickle arbitrary objects; if you trust the file, re-save its state_dict "
            "with torch.save(state_dict, 'weights.pth')"
        ) from e
    for _ in range(3):  # e.g. {"model": {"state_dict": {...}}}
        if isinstance(obj, Mapping) and not any(torch.is_tensor(v) for v in obj.values()):
            inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping):
        raise EncoderError(f"{path} holds a {type(obj).__name__}, not a state_dict")
    tensors = {str(k): v for k, v in obj.items() if torch.is_tensor(v)}
    if not tensors:
        raise EncoderError(f"{path} contains no tensors (top-level keys: {list(obj)[:10]})")
    return tensors


def strip_prefixes(sd: dict[str, torch.Tensor], model_keys: set[str]) -> dict[str, torch.Tensor]:
    """Drop wrapper prefixes (DDP's ``module.``, ``torch.compile``'s ``_orig_mod.``, ...).

    A prefix is removed only when that increases the overlap with the model's keys, so a model
    whose own keys start with ``encoder.`` (transformers) or ``trunk.`` (CONCH) is left alone.
    """

    def overlap(d: Mapping[str, Any]) -> int:
        return len(model_keys.intersection(d))

    changed = True
    while changed:
        changed = False
        for p in _STRIP_PREFIXES:
            cand = {(k.removeprefix(p)): v for k, v in sd.items()}
            if len(cand) == len(sd) and overlap(cand) > overlap(sd):
                sd, changed = cand, True
    return sd


def check_against(
    name: str,
    path: Path,
    sd: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    ignore_unexpected: Iterable[str] = (),
) -> None:
    """Raise EncoderError summarising missing / unexpected / mis-shaped keys, if any.

    ``ignore_unexpected`` are regexes of checkpoint keys the encoder deliberately does not use
    (a classifier head, ResNet's ``layer4``). Keys are listed in model / checkpoint order (stem
    first), which reads better than sorted keys where ``blocks.10`` precedes ``blocks.2``.
    """
    ignore = [re.compile(p) for p in ignore_unexpected]
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected and not any(r.search(k) for r in ignore)]
    shapes = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in sd and tuple(sd[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or shapes):
        return

    def summary(label: str, items: list[str]) -> str:
        more = f" (+{len(items) - 6} more)" if len(items) > 6 else ""
        return f"\n  {len(items)} {label}: {', '.join(items[:6])}{more}"

    msg = f"checkpoint {path} does not match the '{name}' architecture:"
    if missing:
        msg += summary("missing keys (in the model, not in the checkpoint)", missing)
    if unexpected:
        msg += summary("unexpected keys (in the checkpoint, not in the model)", unexpected)
    if shapes:
        msg += summary("shape mismatches", shapes)
    if not set(sd).intersection(expected):
        msg += "\n  no key in common: is this the checkpoint of a different model?"
    msg += (
        "\n  If it is a custom checkpoint of another size, pass arch_overrides "
        "(e.g. embed_dim/depth/num_heads) to load_encoder."
    )
    raise EncoderError(msg)
