"""A peer extractor's loop, for an anchor measured in the same run: the CLAM-style pattern.

What CLAM's ``extract_features_fp.py`` does, re-written here from its description (no CLAM code is
copied; CLAM is GPL-3): a Dataset over the slide's tile coordinate list, one OpenSlide
``read_region`` per tile at the pyramid level best suited to the tile, RGBA→RGB, resize to the
model's input, ``ToTensor`` + ``Normalize`` on the CPU in the workers, a DataLoader with batch 256
and pinned memory, the model in float32, and features copied back to the host after every batch.
The same tiles (every magnification), the same encoder weights and the same input size as
duopath's run, so the two produce the same features up to bf16 rounding (the benchmark checks it).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import openslide
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset


class PerTileDataset(Dataset):
    """One item per tile: its own read_region, resize and float normalisation."""

    def __init__(self, slide: Path, tiles: pd.DataFrame, px: int, mean, std) -> None:
        self.slide, self.px = str(slide), px
        self.rows = tiles[["x", "y", "size0"]].to_numpy(np.float64)
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self._wsi = None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> torch.Tensor:
        if self._wsi is None:  # one handle per worker process
            self._wsi = openslide.OpenSlide(self.slide)
        x, y, size0 = self.rows[i]
        level = self._wsi.get_best_level_for_downsample(size0 / self.px)
        size = max(1, round(size0 / self._wsi.level_downsamples[level]))
        img = self._wsi.read_region((int(x), int(y)), level, (size, size)).convert("RGB")
        if size != self.px:
            img = img.resize((self.px, self.px), Image.BILINEAR)
        t = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float().div_(255)
        return (t - self.mean) / self.std


@torch.inference_mode()
def run_peer(module: torch.nn.Module, slide: Path, tiles: pd.DataFrame, *, px: int, mean, std,
             device: torch.device, workers: int, batch_size: int = 256) -> tuple[np.ndarray, float]:
    """Features [N, D] (float32, tile-table order) and the wall seconds of the whole loop."""
    t0 = time.perf_counter()
    loader = DataLoader(PerTileDataset(slide, tiles, px, mean, std), batch_size=batch_size,
                        num_workers=workers, pin_memory=device.type == "cuda", shuffle=False)
    module = module.to(device).float().eval()
    out = [module(batch.to(device, non_blocking=True)).cpu().numpy() for batch in loader]
    return np.concatenate(out), time.perf_counter() - t0
