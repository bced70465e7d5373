"""Patient bags for training and evaluation: tile features from the slides' zarr stores.

A *bag* is everything one patient contributes, per magnification (coarse to fine):
``feats [N, D]`` (as stored, float16), ``coords [N, 2]`` tile CENTRES in µm, ``parent [N]``
(row of the enclosing tile in the next-coarser magnification's bag, -1 at the coarsest) and
``slide [N]`` (which of the patient's slides the tile came from).

Design choices and why:

* **All slides of a patient are pooled into one bag per magnification.** Rows are
  concatenated, so a fine tile's ``parent`` is shifted by the number of coarse tiles of the
  slides before it; otherwise the IGC loss would compare slide 2's 20x attention with slide
  1's 10x tiles.
* **Slides are laid side by side in µm.** Each slide's coordinates start at its own origin, so
  two slides would overlap in space and the deformable attention (which samples tissue
  neighbourhoods from ``coords``) would treat tiles of different slides as neighbours. Slide
  k+1 is shifted along x to start ``SLIDE_GAP_TILES`` coarse tile widths after slide k ends:
  far beyond the offset bound of the deformable sampling, so no neighbourhood spans slides.
* **Coordinates are converted to tile centres in µm**: ``(x + size0 / 2) * slide_mpp``; the
  stores hold level-0 pixel top-left corners, whose meaning depends on the scanner.
* **Training subsamples the coarsest magnification, and the children follow.** At most
  ``max_tiles`` coarsest tiles are drawn at random (a fresh draw each epoch, from a seeded
  generator); every finer tile whose ancestor was drawn is kept and its ``parent`` remapped
  to the ancestor's new row. So every kept fine tile still has its parent in the bag, and the
  cross-magnification losses keep comparing the *same tissue*. (Subsampling each magnification
  independently would leave most 20x tiles without their 10x tile.) Evaluation always uses
  full bags.
* **Features are read once per patient and kept in memory** (``BagStore``) up to a byte
  budget; beyond it bags are re-read from zarr on demand, so a real cohort (tens of GB of
  features) still trains, just with more I/O.
* **RNA is joined by patient ID, never by row position** (:mod:`duopath.training.genes`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SLIDE_GAP_TILES = 8.0
"""Gap between pooled slides, in coarse tile widths (≫ the deformable offset bound of ~2)."""


class DataError(ValueError):
    """Inputs that cannot make a training set (mismatched stores, missing patients ...)."""


# --------------------------------------------------------------------------- bags


@dataclass(frozen=True)
class MagBag:
    """One magnification of one patient (see module docstring)."""

    feats: np.ndarray
    coords: np.ndarray
    parent: np.ndarray
    slide: np.ndarray
    size_um: float = 0.0
    """Tile width in µm (0 = unknown); sets the gap between pooled slides."""

    def __len__(self) -> int:
        return int(self.feats.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.feats.nbytes + self.coords.nbytes + self.parent.nbytes + self.slide.nbytes)


@dataclass(frozen=True)
class PatientBag:
    """All usable slides of one patient, pooled per magnification."""

    patient_id: str
    slides: tuple[str, ...]
    mags: dict[str, MagBag]

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.mags.values())

    def n_tiles(self) -> dict[str, int]:
        return {m: len(b) for m, b in self.mags.items()}


@dataclass(frozen=True)
class StoreInfo:
    """Root metadata of a feature store, read without loading features."""

    path: Path
    slide_id: str
    status: str
    encoder: str | None
    weights_id: str | None
    dim: int | None
    mags: tuple[str, ...]


def open_zarr_group(path: Path | str):
    """Open a feature store (a zarr group) read-only -- the one opener of every store reader.

    Silences the warning Snakemake's directory marker causes: it marks directory outputs with a
    ``.snakemake_timestamp`` file, which zarr reports as an unknown hierarchy member.
    """
    import zarr

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not recognized as a component.*")
        return zarr.open_group(str(path), mode="r")


def store_info(path: Path | str) -> StoreInfo:
    """Status, encoder and magnification groups of one slide's feature store."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"feature store {path} does not exist")
    root = open_zarr_group(path)
    attrs = dict(root.attrs)
    with warnings.catch_warnings():  # Snakemake's directory marker (see open_zarr_group)
        warnings.filterwarnings("ignore", message=".*not recognized as a component.*")
        mags = tuple(sorted(root.group_keys()))
    dim = attrs.get("dim")
    return StoreInfo(
        path=path,
        slide_id=str(attrs.get("slide_id", path.stem)),
        status=str(attrs.get("status", "ok" if mags else "failed")),
        encoder=attrs.get("encoder"),
        weights_id=attrs.get("weights_id"),
        dim=None if dim is None else int(dim),
        mags=mags,
    )


def read_slide(path: Path | str, magnifications: Sequence[str]) -> dict[str, MagBag]:
    """One slide's magnifications as bags with µm tile-centre coordinates (slide origin)."""
    root = open_zarr_group(Path(path))
    slide_mpp = root.attrs.get("slide_mpp")
    if slide_mpp is None:
        raise DataError(f"{path}: root attribute slide_mpp is missing")
    out: dict[str, MagBag] = {}
    for m in magnifications:
        g = root[m]
        size0 = float(g.attrs["size0"])
        xy = np.asarray(g["coords"][:], dtype=np.float64)
        centres = ((xy + size0 / 2.0) * float(slide_mpp)).astype(np.float32)
        feats = np.asarray(g["features"][:])
        parent = np.asarray(g["parent"][:], dtype=np.int64)
        if feats.shape[0] != centres.shape[0] or parent.shape[0] != feats.shape[0]:
            raise DataError(f"{path}/{m}: features, coords and parent have different lengths")
        out[m] = MagBag(feats, centres, parent, np.zeros(feats.shape[0], dtype=np.int16),
                        float(g.attrs.get("size_um", 0.0)))
    return out


def pool_slides(slides: Sequence[Mapping[str, MagBag]], magnifications: Sequence[str]) -> dict[str, MagBag]:
    """Concatenate several slides' bags; shift parents and lay slides side by side in x.

    ``magnifications`` are ordered coarse to fine; the coarsest's tiles define each slide's
    extent (finer tiles lie inside them).
    """
    if not slides:
        raise DataError("pool_slides needs at least one slide")
    mags = list(magnifications)
    coarse = mags[0]
    parts: dict[str, list[MagBag]] = {m: [] for m in mags}
    offsets = dict.fromkeys(mags, 0)
    cursor = 0.0
    for k, slide in enumerate(slides):
        c = slide[coarse].coords
        if len(c) == 0:
            raise DataError("a slide with an empty coarsest magnification cannot be pooled")
        pitch = slide[coarse].size_um or _pitch(c)
        shift = 0.0 if k == 0 else cursor - (float(c[:, 0].min()) - pitch / 2.0)
        cursor = float(c[:, 0].max()) + pitch / 2.0 + shift + SLIDE_GAP_TILES * pitch
        for i, m in enumerate(mags):
            b = slide[m]
            coords = b.coords.copy()
            coords[:, 0] += shift
            if i == 0:
                parent = np.full(len(b), -1, dtype=np.int64)
            else:
                parent = b.parent.astype(np.int64)
                n_up = len(slide[mags[i - 1]])
                if len(parent) and (parent.min() < 0 or parent.max() >= n_up):
                    raise DataError(f"{m}: parent index out of range of the {mags[i - 1]} tiles")
                parent = parent + offsets[mags[i - 1]]
            parts[m].append(MagBag(b.feats, coords, parent, np.full(len(b), k, dtype=np.int16), b.size_um))
        for m in mags:
            offsets[m] += len(slide[m])
    return {
        m: MagBag(
            np.concatenate([p.feats for p in parts[m]]),
            np.concatenate([p.coords for p in parts[m]]),
            np.concatenate([p.parent for p in parts[m]]),
            np.concatenate([p.slide for p in parts[m]]),
            max(p.size_um for p in parts[m]),
        )
        for m in mags
    }


def _pitch(coords: np.ndarray) -> float:
    """Tile pitch (µm) of a grid without a ``size_um``: the smallest non-zero centre gap."""
    gaps = [np.diff(np.unique(coords[:, j])) for j in range(2)]
    gaps = [g[g > 0] for g in gaps if g.size]
    gaps = [g for g in gaps if g.size]
    return float(min(g.min() for g in gaps)) if gaps else 1.0


def subsample_bag(
    bag: PatientBag, magnifications: Sequence[str], max_tiles: int | None, rng: np.random.Generator
) -> PatientBag:
    """Random ≤ ``max_tiles`` coarsest tiles and all their finer descendants (module docstring).

    Kept tiles stay in their original order, so the result only depends on which were drawn.
    """
    mags = list(magnifications)
    n0 = len(bag.mags[mags[0]])
    if max_tiles is None or n0 <= max_tiles:
        return bag
    keep = np.sort(rng.choice(n0, size=max_tiles, replace=False))
    out: dict[str, MagBag] = {}
    new_row = np.full(n0, -1, dtype=np.int64)
    new_row[keep] = np.arange(keep.size)
    b0 = bag.mags[mags[0]]
    out[mags[0]] = MagBag(b0.feats[keep], b0.coords[keep], b0.parent[keep], b0.slide[keep], b0.size_um)
    for m in mags[1:]:
        b = bag.mags[m]
        mapped = new_row[b.parent]
        rows = np.flatnonzero(mapped >= 0)
        out[m] = MagBag(b.feats[rows], b.coords[rows], mapped[rows], b.slide[rows], b.size_um)
        new_row = np.full(len(b), -1, dtype=np.int64)
        new_row[rows] = np.arange(rows.size)
    return PatientBag(bag.patient_id, bag.slides, out)


class BagStore:
    """Patients' bags, read from their slides' feature stores once and cached in memory.

    Args:
        slides_by_patient: patient → slide IDs (from the sample sheet).
        features_dir: directory holding ``{slide}.zarr``.
        magnifications: coarse to fine; ``None`` = every magnification of the stores.
        cache_bytes: budget of the in-memory cache (bags beyond it are re-read on demand).

    A slide whose store is failed/empty or lacks a magnification is skipped with a warning; a
    patient left without a usable slide is not in :attr:`patients` (also warned).
    """

    def __init__(
        self,
        slides_by_patient: Mapping[str, Sequence[str]],
        features_dir: Path | str,
        magnifications: Sequence[str] | None = None,
        cache_bytes: float = 8e9,
    ) -> None:
        self.features_dir = Path(features_dir)
        self.cache_bytes = float(cache_bytes)
        self._cache: dict[str, PatientBag] = {}
        self._cached_bytes = 0
        self.reads = 0
        infos: dict[str, list[StoreInfo]] = {}
        for pid, slides in slides_by_patient.items():
            infos[str(pid)] = [store_info(self.features_dir / f"{s}.zarr") for s in slides]
        ok = [i for group in infos.values() for i in group if i.status == "ok" and i.mags]
        if not ok:
            raise DataError(f"no usable feature store under {self.features_dir}")
        if magnifications is None:
            magnifications = _order_coarse_to_fine(ok[0])
        self.magnifications = tuple(magnifications)
        encoders = {(i.encoder, i.weights_id, i.dim) for i in ok}
        if len(encoders) > 1:
            raise DataError(f"feature stores under {self.features_dir} mix encoders "
                            f"{sorted(map(str, encoders))}")
        self.encoder, self.weights_id, self.feature_dim = next(iter(encoders))
        self.slides: dict[str, tuple[Path, ...]] = {}
        self.excluded: dict[str, str] = {}
        for pid, group in infos.items():
            usable = []
            for info in group:
                missing = [m for m in self.magnifications if m not in info.mags]
                if info.status != "ok" or missing:
                    why = info.status if info.status != "ok" else f"no {missing} group"
                    log.warning("slide %s (patient %s) skipped: %s", info.slide_id, pid, why)
                    continue
                usable.append(info.path)
            if usable:
                self.slides[pid] = tuple(usable)
            else:
                self.excluded[pid] = "no usable slide" if group else "no slide"
                log.warning("patient %s has no usable slide: left out of WSI models", pid)

    @property
    def patients(self) -> list[str]:
        return sorted(self.slides)

    def get(self, patient_id: str) -> PatientBag:
        """The patient's full pooled bag (cached while the budget allows)."""
        bag = self._cache.get(patient_id)
        if bag is not None:
            return bag
        if patient_id not in self.slides:
            raise DataError(f"patient {patient_id} has no usable feature store")
        paths = self.slides[patient_id]
        self.reads += 1
        pooled = pool_slides([read_slide(p, self.magnifications) for p in paths], self.magnifications)
        bag = PatientBag(patient_id, tuple(p.stem for p in paths), pooled)
        if self._cached_bytes + bag.nbytes <= self.cache_bytes:
            self._cache[patient_id] = bag
            self._cached_bytes += bag.nbytes
        return bag


def _order_coarse_to_fine(info: StoreInfo) -> tuple[str, ...]:
    """Magnification groups ordered by their mpp attribute, coarse (large µm/px) first."""
    root = open_zarr_group(info.path)
    return tuple(sorted(info.mags, key=lambda m: -float(root[m].attrs["mpp"])))
