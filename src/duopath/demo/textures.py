"""A bank of real H&E patches, split into tumour-like and stroma-like texture.

Why real texture: the pipeline's encoders are trained on natural/histology images; tissue
painted from noise would make every feature meaningless and the demo could not show that a
model finds tumour. The source is the CMU-1-Small-Region sample (OpenSlide test data, CC0),
shipped as package data: skin with a nuclei-dense epidermis (our "tumour-like" class) and a
pink, sparse, collagen-rich dermis (our "stroma-like" class).

Patches are chosen by colour deconvolution (Ruifrok & Johnston's H&E stain vectors): dense,
hematoxylin-rich patches become tumour-like, eosin-dominant low-hematoxylin patches become
stroma-like. Blank glass and the green tissue-marking dye at the specimen edge are excluded.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

log = logging.getLogger(__name__)

SOURCE_SLIDE = "CMU-1-Small-Region.svs"
SOURCE_MPP = 0.499  # from the slide's own metadata (openslide.mpp-x)
PATCH_PX = 128  # source patch side: 64 µm, well under one 20x tile (112 µm)
STRIDE_PX = 32
MIN_TISSUE = 0.85  # fraction of non-glass pixels a patch needs
MAX_DYE = 0.002  # fraction of green marking-dye pixels a patch may have
KEEP_FRACTION = 0.2  # top share of eligible patches kept for each class

# Ruifrok & Johnston (2001) optical-density vectors for hematoxylin, eosin, DAB.
_STAINS = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
_STAINS = _STAINS / np.linalg.norm(_STAINS, axis=1, keepdims=True)
_UNMIX = np.linalg.inv(_STAINS).astype(np.float32)


@dataclass(frozen=True)
class TextureBank:
    """Square RGB patches ``(N, P, P, 3)`` uint8 per tissue class, at the target mpp."""

    tumour: np.ndarray
    stroma: np.ndarray

    @property
    def patch_px(self) -> int:
        return int(self.tumour.shape[1])


def source_slide_path() -> Traversable:
    """The shipped CMU-1-Small-Region slide (package data)."""
    return resources.files("duopath") / "data" / "slides" / SOURCE_SLIDE


def stain_densities(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hematoxylin and eosin optical densities per pixel (colour deconvolution)."""
    od = -np.log((rgb.astype(np.float32) + 1.0) / 256.0)
    hed = od.reshape(-1, 3) @ _UNMIX
    hed = hed.reshape(rgb.shape)
    return hed[..., 0], hed[..., 1]


def _box_means(values: np.ndarray, size: int, stride: int) -> np.ndarray:
    """Mean of ``values`` over every ``size``-square window on a ``stride`` grid (integral image)."""
    c = np.pad(values.astype(np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    ys = np.arange(0, values.shape[0] - size + 1, stride)[:, None]
    xs = np.arange(0, values.shape[1] - size + 1, stride)[None, :]
    total = c[ys + size, xs + size] - c[ys, xs + size] - c[ys + size, xs] + c[ys, xs]
    return total / (size * size)


def _read_source() -> np.ndarray:
    import openslide  # local: keep `import duopath.demo` light for Snakemake's DAG parsing

    with resources.as_file(source_slide_path()) as path, openslide.OpenSlide(str(path)) as slide:
        rgba = np.asarray(slide.read_region((0, 0), 0, slide.dimensions))
    return np.ascontiguousarray(rgba[..., :3])


def _select(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-left corners ``(K, 2)`` of the tumour-like and of the stroma-like patches."""
    hema, eosin = stain_densities(rgb)
    tissue = rgb.min(axis=-1) < 210
    r, g = rgb[..., 0].astype(np.int16), rgb[..., 1].astype(np.int16)
    dye = g > r + 20
    nuclei = (hema > 1.0) & tissue

    frac_tissue = _box_means(tissue, PATCH_PX, STRIDE_PX)
    frac_dye = _box_means(dye, PATCH_PX, STRIDE_PX)
    mean_h = _box_means(hema * tissue, PATCH_PX, STRIDE_PX)
    mean_e = _box_means(eosin * tissue, PATCH_PX, STRIDE_PX)
    frac_nuclei = _box_means(nuclei, PATCH_PX, STRIDE_PX)
    eligible = np.argwhere((frac_tissue > MIN_TISSUE) & (frac_dye < MAX_DYE))
    if len(eligible) < 50:
        raise RuntimeError(f"{SOURCE_SLIDE}: only {len(eligible)} usable patches (corrupt copy?)")
    at = tuple(eligible.T)
    keep = max(8, int(KEEP_FRACTION * len(eligible)))
    # Stable sorts: ties must not depend on the platform's sort so the bank is reproducible.
    tumour_rank = np.argsort(-(mean_h[at] + frac_nuclei[at]), kind="stable")[:keep]
    stroma_rank = np.argsort(-(mean_e[at] - mean_h[at] - frac_nuclei[at]), kind="stable")[:keep]
    return eligible[tumour_rank] * STRIDE_PX, eligible[stroma_rank] * STRIDE_PX


def _crop(rgb: np.ndarray, corners: np.ndarray, out_px: int) -> np.ndarray:
    patches = np.stack([rgb[y : y + PATCH_PX, x : x + PATCH_PX] for y, x in corners])
    if out_px == PATCH_PX:
        return patches
    return np.stack([np.asarray(Image.fromarray(p).resize((out_px, out_px), Image.BICUBIC)) for p in patches])


@functools.lru_cache(maxsize=4)
def load_texture_bank(mpp: float) -> TextureBank:
    """Tumour-like and stroma-like patches rescaled to ``mpp`` µm/px (cached per process).

    Rescaling keeps the physical size right: a nucleus is ~7 µm whatever the demo's mpp.
    """
    rgb = _read_source()
    tumour_at, stroma_at = _select(rgb)
    out_px = round(PATCH_PX * SOURCE_MPP / mpp)
    if abs(out_px - PATCH_PX) <= 2:
        out_px = PATCH_PX  # 0.499 vs 0.5 µm/px: resampling would only blur
    bank = TextureBank(tumour=_crop(rgb, tumour_at, out_px), stroma=_crop(rgb, stroma_at, out_px))
    log.debug(
        "texture bank: %d tumour-like, %d stroma-like patches of %d px",
        len(bank.tumour),
        len(bank.stroma),
        out_px,
    )
    return bank
