"""Where feature extraction spends its time, stage by stage (read, decode, resize, copy, forward, write).

Why a breakdown and not one number: extraction is a pipeline of CPU reader processes feeding one
accelerator, and its speed is set by whichever stage binds. Tiles/s alone cannot say whether to
add reader cores, use a smaller model or fix a copy. The stages:

- ``read_decode``, ``convert``, ``resize``: CPU seconds summed over the DataLoader worker
  processes (OpenSlide's ``read_region`` reads and JPEG-decodes in one call, so those two are one
  stage), measured in the workers and carried back with each batch;
- ``wait``: wall seconds the main thread waited for the next batch (the accelerator starved by
  the readers when this is large);
- ``h2d``, ``preprocess``, ``forward``, ``d2h``: accelerator seconds of the host→device copy,
  normalisation/resize, the encoder forward and the device→host copy of the features, timed
  with CUDA events so the measurement adds no synchronisation (wall seconds on CPU);
- ``write``: wall seconds writing the zarr store.

On CUDA the sum of the stages can exceed the wall time: workers run in parallel with each other
and with the GPU. ``busy_fraction`` (forward seconds / wall) is the share of the run the encoder
was computing: close to 1 means the model binds, well below 1 means the readers (``wait``) or
the Python loop do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

WORKER_STAGES = ("read_decode", "convert", "resize")
DEVICE_STAGES = ("h2d", "preprocess", "forward", "d2h")
STAGES = ("wait", *WORKER_STAGES, *DEVICE_STAGES, "write")


@dataclass
class StageTimes:
    """Seconds per stage of one extraction (one slide, or several summed)."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    n_tiles: int = 0
    wall_s: float = 0.0

    def add(self, other: StageTimes) -> None:
        for k, v in other.seconds.items():
            self.seconds[k] = self.seconds.get(k, 0.0) + v
        self.n_tiles += other.n_tiles
        self.wall_s += other.wall_s

    def as_dict(self) -> dict[str, float]:
        out = {f"{k}_s": round(v, 4) for k, v in self.seconds.items()}
        out["n_tiles"] = self.n_tiles
        out["wall_s"] = round(self.wall_s, 4)
        out["tiles_per_s"] = round(self.n_tiles / self.wall_s, 2) if self.wall_s > 0 else 0.0
        out["busy_fraction"] = round(self.seconds["forward"] / self.wall_s, 3) if self.wall_s else 0.0
        return out


class DeviceClock:
    """Times device stages of a batch loop without synchronising the device on every batch.

    On CUDA, each :meth:`mark` records an event on the current stream; the elapsed times between
    consecutive marks are read once, in :meth:`collect`, after the loop has synchronised. On CPU
    the work is synchronous and wall time is the device time.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._marks: list[tuple[str, object]] = []
        self._wall: dict[str, float] = dict.fromkeys(DEVICE_STAGES, 0.0)
        self._last = 0.0

    def start(self) -> None:
        """Begin a batch: the next :meth:`mark` measures from here."""
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self._marks.append(("", ev))
        else:
            self._last = time.perf_counter()

    def mark(self, stage: str) -> None:
        """The work enqueued since the previous mark belongs to ``stage``."""
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self._marks.append((stage, ev))
        else:
            now = time.perf_counter()
            self._wall[stage] += now - self._last
            self._last = now

    def collect(self) -> dict[str, float]:
        """Seconds per device stage (synchronises the device once)."""
        if not self.cuda:
            return dict(self._wall)
        torch.cuda.synchronize()
        out = dict.fromkeys(DEVICE_STAGES, 0.0)
        for (_, prev), (stage, ev) in zip(self._marks, self._marks[1:], strict=False):
            if stage:  # a "" mark starts a new batch; the gap before it is not a stage
                out[stage] += prev.elapsed_time(ev) / 1000.0  # type: ignore[attr-defined]
        self._marks.clear()
        return out
