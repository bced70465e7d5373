"""Trained-model checkpoints: one file format, one writer, one reader; nothing is ever unpickled.

Why not ``torch.save``/``torch.load``: a pickle runs code when it is read, and researchers share
trained models, so ``duopath predict --model`` on a file from someone else would run whatever that
file holds. A checkpoint here is a ``safetensors`` file: a JSON header with the tensors' dtypes,
shapes and offsets, then raw tensor bytes. Reading it parses JSON and copies bytes, nothing else.

Layout of the file (``layout.CHECKPOINT``):

* tensors: the model's ``state_dict`` (names as in the model);
* header metadata (``__metadata__``, string to string): ``format`` = :data:`FORMAT`, ``version``
  = :data:`VERSION`, ``kind`` (one of :data:`KINDS`) and ``meta``, the JSON of everything else
  needed to rebuild and apply the model without the training run (Python's JSON, which keeps
  the last survival bin edge, +inf, as ``Infinity``): ``model_name`` (the registry entry) and
  ``model_kwargs`` (its architecture, ``duopath.models.arch``, as JSON), task, time-bin edges or
  class names, gene lists and scaler (teacher / baseline), tiling and risk threshold (student),
  encoder and weights id, settings, seed, fold, versions.

What is refused, each with one :class:`CheckpointError` line naming the file: a file that is not
safetensors (an old pickle ``checkpoint.pt``, random bytes, a truncated file), a safetensors file
that is not a duopath checkpoint or has another format version, and a checkpoint of another kind
than the caller expects (a teacher where a student is expected; a baseline where a teacher is, so
a student never distils from a baseline).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from duopath.io import atomic_path, jsonable

__all__ = ["FORMAT", "KINDS", "VERSION", "Checkpoint", "CheckpointError", "load_model",
           "read_checkpoint", "save_checkpoint"]

FORMAT = "duopath-checkpoint"
VERSION = 2
"""Version 1 was the pickled ``checkpoint.pt`` (``duopath-teacher/1`` ...), refused since."""
KINDS = ("teacher", "baseline", "student")


class CheckpointError(ValueError):
    """A file that is not a loadable duopath checkpoint of the expected kind (one line, names it)."""


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint as read: its kind, its metadata and its tensors (on the CPU)."""

    path: Path
    kind: str
    meta: dict[str, Any]
    state: dict[str, Tensor]

    def build(self) -> nn.Module:
        """The model of ``meta["model_name"]`` with these weights, in eval mode."""
        from duopath.models import build_model

        try:
            model = build_model(self.meta["model_name"], self.meta["model_kwargs"])
            model.load_state_dict(self.state)
        except (KeyError, TypeError, RuntimeError, ValueError) as err:
            raise CheckpointError(f"{self.path}: the {self.kind} checkpoint does not rebuild its model "
                                  f"({type(err).__name__}: {str(err).splitlines()[0]})") from None
        return model.eval()


def save_checkpoint(path: Path | str, kind: str, model: nn.Module, meta: Mapping[str, Any]) -> None:
    """Write ``model``'s weights and ``meta`` (JSON-able values) atomically to ``path``."""
    from safetensors.torch import save_file

    if kind not in KINDS:
        raise ValueError(f"checkpoint kind must be one of {KINDS}, got {kind!r}")
    if "model_name" not in meta or "model_kwargs" not in meta:
        raise ValueError("checkpoint metadata needs model_name and model_kwargs")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    header = {"format": FORMAT, "version": str(VERSION), "kind": kind,
              "meta": json.dumps(dict(meta), default=jsonable)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)


def read_checkpoint(path: Path | str, kinds: Collection[str]) -> Checkpoint:
    """Read a checkpoint of one of ``kinds``, tensors on the CPU (module docstring: what is refused)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    wanted = " or ".join(kinds)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            header = fh.metadata() or {}
            if header.get("format") != FORMAT:
                raise CheckpointError(f"{path}: a safetensors file but not a duopath checkpoint")
            state = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except SafetensorError as err:
        raise CheckpointError(f"{path}: not a duopath {wanted} checkpoint (not a safetensors file: {err}); "
                              "duopath never unpickles a file, so a pickled checkpoint.pt of an older "
                              "duopath must be retrained") from None
    if header.get("version") != str(VERSION):
        raise CheckpointError(f"{path}: checkpoint format version {header.get('version')!r}, this "
                              f"duopath reads version {VERSION}")
    kind = header.get("kind")
    if kind not in kinds:
        raise CheckpointError(f"{path}: a {kind} checkpoint, but a {wanted} checkpoint is needed here")
    try:
        meta = json.loads(header["meta"])
    except (KeyError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: checkpoint metadata is not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: checkpoint metadata is not a JSON object")
    return Checkpoint(path=path, kind=kind, meta=meta, state=state)


def load_model(
    path: Path | str, kinds: Collection[str], device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a trained model of one of ``kinds``: (model in eval mode on ``device``, metadata).

    The metadata is the checkpoint's ``meta`` plus its ``kind``.
    """
    ckpt = read_checkpoint(path, kinds)
    return ckpt.build().to(device), {**ckpt.meta, "kind": ckpt.kind}
