"""Open a slide, know its physical resolution, and read pixels *by µm/px*, never by level.

Why by mpp: scanners disagree on what "20x" means (0.25 vs 0.5 µm/px at level 0, pyramids with
2x or 4x steps). A tile at 0.5 µm/px is read from the nearest *finer* pyramid level and
resized, so the same tissue area maps to the same pixels on every scanner.

A slide without mpp metadata is an error unless the sample sheet gives an override: a silent
default (0.25 or 0.5) would put half the cohort at the wrong magnification.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

# Levels within this relative tolerance of a target mpp count as "at" the target (scanners
# write 0.2498 or 0.2527 for a nominal 0.25).
MPP_TOLERANCE = 0.02


class SlideError(RuntimeError):
    """A per-slide problem (unreadable, no mpp, no tissue). Names the slide and what to do."""

    def __init__(self, slide: str | Path, reason: str, hint: str = "") -> None:
        self.slide = str(slide)
        self.reason = reason
        self.hint = hint
        super().__init__(f"slide {self.slide}: {reason}" + (f" -- {hint}" if hint else ""))


class MissingMppError(SlideError):
    """The slide's header has no microns-per-pixel and no override was given."""


@dataclass
class Slide:
    """An open slide with a known level-0 resolution (µm/px)."""

    path: Path
    handle: object = field(repr=False)  # openslide.OpenSlide
    mpp: float
    mpp_source: str

    # Cached: after a failed read OpenSlide puts the handle in an error state in which even
    # these raise, and the geometry never changes while a slide is open.
    @functools.cached_property
    def dimensions(self) -> tuple[int, int]:
        return tuple(self.handle.dimensions)  # type: ignore[attr-defined]

    @functools.cached_property
    def level_downsamples(self) -> tuple[float, ...]:
        return tuple(self.handle.level_downsamples)  # type: ignore[attr-defined]

    @functools.cached_property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return tuple(self.handle.level_dimensions)  # type: ignore[attr-defined]

    def level_for_mpp(self, target_mpp: float) -> int:
        """The coarsest level whose resolution is at least as fine as ``target_mpp``."""
        best = 0
        for level, ds in enumerate(self.level_downsamples):
            if self.mpp * ds <= target_mpp * (1 + MPP_TOLERANCE):
                best = level
        return best

    def read_square(self, x: int, y: int, size0: float, out_px: int) -> np.ndarray:
        """Read a square of ``size0`` level-0 px at level-0 (x, y); return uint8 [out_px, out_px, 3].

        Reads from the nearest finer level and resizes (antialiased). Areas outside the slide or
        transparent in the file become white, like glass.
        """
        return self.read_nested(x, y, size0, [(x, y, size0)], out_px)[0]

    def read_nested(
        self,
        x: int,
        y: int,
        size0: float,
        squares: list[tuple[int, int, float]],
        out_px: int,
        timer: np.ndarray | None = None,
    ) -> list[np.ndarray]:
        """Read the region (x, y, size0) once and cut every square inside it to ``out_px``.

        Why: a 10x tile and its 2×2 20x children cover the same tissue. Reading and decoding the
        region once, at the level the *finest* square needs, and cropping the others from it
        halves the JPEG decoding of a nested grid compared with one ``read_region`` per tile.
        ``squares`` are (x, y, size0) in level-0 px and must lie inside the region (±1 px).
        ``timer`` (float64 [3]), when given, accumulates seconds spent in OpenSlide's
        ``read_region`` (file read + JPEG decode, inseparable inside OpenSlide), in the RGBA→RGB
        conversion, and in cropping + resizing: the extraction benchmark's time breakdown.
        """
        finest_mpp = min(s for _, _, s in squares) * self.mpp / out_px
        level = self.level_for_mpp(finest_mpp)
        ds = self.level_downsamples[level]
        size_l = max(1, round(size0 / ds))
        t0 = time.perf_counter()
        region = self.read_region((int(x), int(y)), level, (size_l, size_l))
        t1 = time.perf_counter()
        rgb = region_to_rgb(region)
        t2 = time.perf_counter()
        out = []
        for sx, sy, ssize in squares:
            x0, y0 = round((sx - x) / ds), round((sy - y) / ds)
            n = max(1, round(ssize / ds))
            crop = rgb[max(0, y0) : y0 + n, max(0, x0) : x0 + n]
            if crop.shape[:2] != (n, n):  # rounding put the square past the region's edge
                crop = np.pad(crop, ((0, n - crop.shape[0]), (0, n - crop.shape[1]), (0, 0)),
                              constant_values=255)
            if n != out_px:
                crop = np.array(Image.fromarray(crop).resize((out_px, out_px), Image.BILINEAR))
            out.append(np.ascontiguousarray(crop))
        if timer is not None:
            timer += (t1 - t0, t2 - t1, time.perf_counter() - t2)
        return out

    def thumbnail(self, target_mpp: float, stripe_px: int = 256) -> tuple[np.ndarray, float]:
        """The whole slide at ~``target_mpp`` as uint8 RGB, and the exact mpp obtained.

        Read in horizontal stripes from the nearest finer level and downsampled stripe by stripe,
        so memory stays bounded on a 100k×80k slide (a whole level-2 read would be gigabytes).
        """
        w0, h0 = self.dimensions
        out_w = max(1, round(w0 * self.mpp / target_mpp))
        out_h = max(1, round(h0 * self.mpp / target_mpp))
        level = self.level_for_mpp(target_mpp)
        ds = self.level_downsamples[level]
        lw, lh = self.level_dimensions[level]
        scale = lh / out_h  # level rows per output row
        stripes = []
        for top in range(0, out_h, stripe_px):
            rows = min(stripe_px, out_h - top)
            y0 = round(top * scale)
            y1 = min(lh, max(y0 + 1, round((top + rows) * scale)))
            region = self.read_region((0, round(y0 * ds)), level, (lw, y1 - y0))
            stripe = Image.fromarray(region_to_rgb(region))
            stripes.append(np.asarray(stripe.resize((out_w, rows), Image.BILINEAR)))
        thumb = np.concatenate(stripes, axis=0)
        return thumb, w0 * self.mpp / out_w

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> Image.Image:
        """OpenSlide's ``read_region``; damaged pixel data raises :class:`SlideError`.

        Why: a file whose header is intact but whose tile data is corrupt or truncated opens
        fine and fails only here, deep inside segmentation or a DataLoader worker. As a
        ``SlideError`` it is a per-slide failure like any other (``on_slide_error``), named and
        explained, instead of a libjpeg message in a traceback.
        """
        import openslide

        try:
            return self.handle.read_region(location, level, size)  # type: ignore[attr-defined]
        except (openslide.OpenSlideError, OSError) as err:
            raise SlideError(
                self.path, f"cannot read its pixel data at level {level}, {location} ({err})",
                "the file is damaged (corrupt or truncated tile data): copy it again from the "
                "source or re-export it; leave it out of the sample sheet meanwhile",
            ) from None

    def close(self) -> None:
        self.handle.close()  # type: ignore[attr-defined]

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def region_to_rgb(region: Image.Image) -> np.ndarray:
    """OpenSlide's RGBA region as uint8 RGB; transparent (unscanned) pixels become white.

    The common case, a fully opaque region, takes PIL's C conversion; only regions with
    transparency pay for the numpy masking.
    """
    if region.mode == "RGBA" and region.getchannel("A").getextrema()[0] < 255:
        return rgba_to_rgb(np.asarray(region))
    return np.asarray(region.convert("RGB"))


def rgba_to_rgb(rgba: np.ndarray) -> np.ndarray:
    """Drop alpha; fully transparent pixels (outside the scanned area) become white."""
    rgb = np.ascontiguousarray(rgba[..., :3])
    if rgba.shape[-1] == 4:
        transparent = rgba[..., 3] == 0
        if transparent.any():
            rgb[transparent] = 255
    return rgb


def open_slide(path: str | Path, mpp_override: float | None = None) -> Slide:
    """Open ``path`` with OpenSlide and resolve its level-0 µm/px.

    Order: the sample sheet's override (the user knows better than a bad header), then
    OpenSlide's ``openslide.mpp-x`` (Aperio/Hamamatsu/... headers, TIFF resolution in cm).
    Raises :class:`SlideError` naming the slide otherwise.
    """
    import openslide

    path = Path(path)
    if not path.exists():
        raise SlideError(path, "file does not exist", "check slide_path in the sample sheet")
    try:
        handle = openslide.OpenSlide(str(path))
    except (openslide.OpenSlideError, OSError) as err:
        raise SlideError(path, f"OpenSlide cannot open it ({err})",
                         "is the file complete and in a format OpenSlide reads?") from None
    if mpp_override is not None:
        return Slide(path, handle, float(mpp_override), "sample sheet override")
    props = handle.properties
    mpp_x, mpp_y = props.get("openslide.mpp-x"), props.get("openslide.mpp-y")
    try:
        mx = float(mpp_x) if mpp_x else math.nan
        my = float(mpp_y) if mpp_y else mx
    except ValueError:
        mx = my = math.nan
    if not (math.isfinite(mx) and mx > 0):
        handle.close()
        raise MissingMppError(
            path, "no microns-per-pixel (mpp) in the file's metadata",
            "add an `mpp` column to the sample sheet with this slide's level-0 µm/px "
            "(e.g. 0.25 for a 40x scan, 0.5 for 20x)",
        )
    if abs(mx - my) / mx > MPP_TOLERANCE:
        log.warning("%s: anisotropic pixels (mpp-x %.4f, mpp-y %.4f); using mpp-x", path, mx, my)
    return Slide(path, handle, mx, "openslide.mpp-x")
