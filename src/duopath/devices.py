"""Which device a job uses -- one policy for every job kind (embed, train, heatmaps, predict).

:func:`resolve_device` is what every command calls with its ``device`` setting; it claims a GPU
through :func:`pick_device` below. :func:`gpu_resource` tells a Snakemake rule whether that
setting will use a GPU, so the rule reserves one (``resources: gpu=...``) and concurrent jobs are
counted against the GPUs there are.

GPU choice: SLURM's when it made one, else one free GPU claimed by a file lock.

Why this exists: Snakemake's ``--resources gpu=4`` only *counts* GPU jobs; it does not say which
GPU each job should use, so without help four embedding jobs on a four-GPU workstation all land
on ``cuda:0``. Under SLURM the plugin asks for ``--gpus=1`` and SLURM binds the job to its GPU
through ``CUDA_VISIBLE_DEVICES``; there the right thing is to use what is visible, as given.

The rule, in one place (:func:`pick_device`):

- ``cpu`` -> CPU. ``cuda:N`` -> exactly that device (the user decided; no claiming).
- ``auto`` / ``cuda`` -> the CUDA devices *visible to this process* (``CUDA_VISIBLE_DEVICES`` as
  SLURM, the user or a container set it; never a device outside it):
  - none: ``auto`` falls back to CPU, ``cuda`` is an error;
  - one (a SLURM job with ``--gpus=1``, a one-GPU machine): ``cuda:0``, nothing to claim;
  - several (a workstation, an ``salloc`` with several GPUs): claim the first one not held by
    another job, with an exclusive ``fcntl.flock`` on ``<lock dir>/<scope>/gpu-<id>.lock``.

Why ``flock`` on a file: the kernel releases the lock when the process ends, however it ends
(SIGKILL, OOM, a crashed node-local job), so a dead job never keeps a GPU reserved, and there is
no daemon or stale PID file to clean up. The claim is held for the life of the process (the
descriptor is kept open); DataLoader workers inherit it harmlessly. Lock files are named by the
``CUDA_VISIBLE_DEVICES`` entry (a physical index or a ``GPU-<uuid>``), so jobs that see
different subsets still agree on which physical GPU is which; inside a SLURM allocation they are
scoped by the job id, because SLURM renumbers each job's devices from 0.

If every visible GPU is already claimed (more concurrent GPU jobs than GPUs: ``--resources
gpu=8`` on four GPUs, or no ``gpu`` limit at all), the job waits up to ``DUOPATH_GPU_WAIT_S``
seconds (default 0) for one to free up and then shares one, with a warning, rather than hang.

The device string returned is an index among the *visible* devices (what torch calls
``cuda:k``); the environment is not modified, because changing ``CUDA_VISIBLE_DEVICES`` after
CUDA was initialised silently has no effect and would put every job back on one GPU.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_DIR_ENV = "DUOPATH_GPU_LOCK_DIR"
WAIT_ENV = "DUOPATH_GPU_WAIT_S"
_POLL_S = 0.5
_DEVICE = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


class GpuError(ValueError):
    """A GPU was asked for and cannot be given (none visible, index out of range, bad name).

    A ValueError, like the other bad-setting errors the `duopath` CLI reports in one line.
    """


@dataclass
class GpuClaim:
    """A claimed GPU: ``index`` among the visible devices, held while ``fd`` stays open."""

    index: int
    token: str
    lock_path: Path | None
    fd: int | None
    shared: bool = False

    @property
    def device(self) -> str:
        return f"cuda:{self.index}"

    def release(self) -> None:
        """Give the GPU back (closing the descriptor drops the flock)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


_PROCESS_CLAIM: GpuClaim | None = None


def default_lock_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$DUOPATH_GPU_LOCK_DIR``, else a per-user folder in /tmp (shared by every job of a node)."""
    env = os.environ if environ is None else environ
    if env.get(LOCK_DIR_ENV):
        return Path(env[LOCK_DIR_ENV])
    base = Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir())
    return base / f"duopath-gpu-locks-{os.getuid()}"


def visible_gpus(device_count: int, environ: Mapping[str, str] | None = None) -> list[str]:
    """Identifiers of the ``device_count`` devices CUDA shows, in CUDA's order (``cuda:0`` first).

    With ``CUDA_VISIBLE_DEVICES`` set, its entries (physical indices, ``GPU-<uuid>`` or
    ``MIG-<uuid>``); otherwise ``0 .. device_count-1``.
    """
    env = os.environ if environ is None else environ
    given = env.get("CUDA_VISIBLE_DEVICES")
    if given is None:
        return [str(i) for i in range(device_count)]
    tokens = [t.strip() for t in given.split(",") if t.strip()]
    return tokens[:device_count]


def lock_scope(environ: Mapping[str, str] | None = None) -> str:
    """Folder name that groups claims which compete for the same GPUs."""
    env = os.environ if environ is None else environ
    job = env.get("SLURM_JOB_ID")
    return f"slurm-{job}" if job else "node"


def _lock_name(token: str) -> str:
    return "gpu-" + re.sub(r"[^A-Za-z0-9_.-]", "_", token) + ".lock"


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path``, or None when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def claim_gpu(
    tokens: Sequence[str],
    lock_dir: Path,
    *,
    scope: str = "node",
    wait_s: float = 0.0,
) -> GpuClaim:
    """Claim the first free GPU of ``tokens`` (visible order) with an exclusive file lock.

    Waits up to ``wait_s`` seconds when all are held, then shares one (``shared=True``, no lock),
    choosing by PID so that several sharers spread over the GPUs.
    """
    if not tokens:
        raise GpuError("no GPU to claim")
    folder = Path(lock_dir) / scope
    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + max(0.0, wait_s)
    while True:
        for index, token in enumerate(tokens):
            path = folder / _lock_name(token)
            fd = _try_lock(path)
            if fd is not None:
                log.info("claimed GPU cuda:%d (CUDA id %s, lock %s)", index, token, path)
                return GpuClaim(index=index, token=token, lock_path=path, fd=fd)
        if time.monotonic() >= deadline:
            break
        time.sleep(_POLL_S)
    index = os.getpid() % len(tokens)
    log.warning(
        "all %d visible GPUs are claimed by other jobs (locks in %s): sharing cuda:%d. Run at most "
        "as many GPU jobs as there are GPUs (`snakemake --resources gpu=%d`) or set %s to wait",
        len(tokens), folder, index, len(tokens), WAIT_ENV,
    )
    return GpuClaim(index=index, token=tokens[index], lock_path=None, fd=None, shared=True)


def cuda_device_count() -> int:
    """Devices torch can use (0 without torch or without a working CUDA)."""
    try:
        import torch
    except ImportError:
        return 0
    try:
        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except RuntimeError:
        return 0


def pick_device(
    requested: str = "auto",
    *,
    device_count: int | None = None,
    environ: Mapping[str, str] | None = None,
    lock_dir: Path | None = None,
    wait_s: float | None = None,
) -> str:
    """The torch device string this process should use for ``encoder.device``-style ``requested``.

    ``device_count`` defaults to torch's count; ``environ`` to ``os.environ``; ``lock_dir`` to
    :func:`default_lock_dir`; ``wait_s`` to ``$DUOPATH_GPU_WAIT_S`` (0). A claim is made once per
    process and reused by later calls, so every slide a process embeds goes to the same GPU.
    """
    global _PROCESS_CLAIM
    env = os.environ if environ is None else environ
    match = _DEVICE.match(requested.strip().lower())
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise GpuError(f"device {requested!r}: use auto, cpu, cuda or cuda:N")
    kind, explicit = match.group(1), match.group(2)
    if kind == "cpu":
        return "cpu"
    count = cuda_device_count() if device_count is None else device_count
    given = env.get("CUDA_VISIBLE_DEVICES")
    if explicit is not None:
        if int(explicit) >= count:
            raise GpuError(f"device {requested!r}: only {count} CUDA device(s) visible "
                           f"(CUDA_VISIBLE_DEVICES={given!r})")
        return f"cuda:{int(explicit)}"
    tokens = visible_gpus(count, env)
    if not tokens:
        if kind == "auto":
            return "cpu"
        raise GpuError(f"device 'cuda' was requested but no CUDA device is visible "
                       f"(CUDA_VISIBLE_DEVICES={given!r}); use device: auto or cpu here")
    if len(tokens) == 1:
        return "cuda:0"
    if _PROCESS_CLAIM is not None and _PROCESS_CLAIM.index < len(tokens) and (
            _PROCESS_CLAIM.token == tokens[_PROCESS_CLAIM.index]):
        return _PROCESS_CLAIM.device
    if wait_s is None:
        wait_s = float(env.get(WAIT_ENV, "0") or 0)
    claim = claim_gpu(tokens, lock_dir or default_lock_dir(env), scope=lock_scope(env), wait_s=wait_s)
    _PROCESS_CLAIM = claim
    return claim.device


def release_process_claim() -> None:
    """Drop this process's claim (tests; a long-lived process that is done with its GPU)."""
    global _PROCESS_CLAIM
    if _PROCESS_CLAIM is not None:
        _PROCESS_CLAIM.release()
        _PROCESS_CLAIM = None


def resolve_device(requested: str = "auto", **pick_kwargs: object):
    """The ``torch.device`` for a ``device`` setting (``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``).

    The one entry point of every job kind: ``auto`` claims a free visible GPU when there is one
    and falls back to the CPU otherwise (:func:`pick_device`; ``pick_kwargs`` are its test
    hooks). A CUDA device is made the current one, so libraries that allocate on "the" GPU use
    the claimed one.
    """
    import torch

    device = torch.device(pick_device(requested, **pick_kwargs))  # type: ignore[arg-type]
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def visible_gpu_count(environ: Mapping[str, str] | None = None) -> int:
    """GPUs this machine shows, without importing torch (cheap enough for Snakemake's parse).

    NVIDIA's driver lists one folder per GPU under ``/proc/driver/nvidia/gpus``;
    ``CUDA_VISIBLE_DEVICES`` narrows that to its entries (empty: none).
    """
    env = os.environ if environ is None else environ
    root = Path("/proc/driver/nvidia/gpus")
    present = len(list(root.iterdir())) if root.is_dir() else 0
    given = env.get("CUDA_VISIBLE_DEVICES")
    if given is None:
        return present
    return min(present, len([t for t in given.split(",") if t.strip()]))


def gpu_resource(requested: str, environ: Mapping[str, str] | None = None) -> int:
    """GPUs a job with device setting ``requested`` reserves (Snakemake ``resources: gpu``).

    ``cuda`` / ``cuda:N``: 1. ``cpu``: 0. ``auto``: 1 when this machine shows a GPU (the job
    will claim one, so the ``gpu`` resource must count it), else 0. Under SLURM the rule is
    evaluated on the submit host, which may have no GPU: set ``device: cuda`` for GPU nodes.
    """
    match = _DEVICE.match(requested.strip().lower())
    if match is None:
        raise GpuError(f"device {requested!r}: use auto, cpu, cuda or cuda:N")
    kind = match.group(1)
    if kind == "cpu":
        return 0
    if kind == "cuda":
        return 1
    return 1 if visible_gpu_count(environ) > 0 else 0


def set_threads(threads: int) -> None:
    """Set torch's CPU threads when asked (``--threads``; 0 = torch's default)."""
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
