"""A heatmap as a figure a pathologist can read: maps side by side, colour bar, legend, title.

One figure per (patient, slide, magnification): the teacher's T and E attention, or the
student's ω and prototype clusters, each over the plain slide (``heatmaps.heatmap_overlay``,
colour only on tissue), each panel at the thumbnail's full size (≥ 1,000 px for slides of a
millimetre or more). Under a continuous panel, a colour bar with its scale stated (percentile
among the patient's tiles) and the raw range of the weights next to the uniform weight, so a
nearly flat map is not mistaken for a sharp one; under the cluster panel, a legend with one
colour and tile count per prototype. The title says which model, magnification, the gate weight
of that magnification (and that a weight of 0 means the map did not enter the prediction), the
prediction and why this patient was chosen. ``FigureInfo`` returns what was drawn, for tests
and the report's captions.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image

from duopath.report.heatmaps import SEQUENTIAL_CMAP, TileMap, heatmap_overlay

MAP_TITLES = {
    "T": "T: attention of the tumour-gene tokens",
    "E": "E: attention of the microenvironment-gene tokens",
    "omega": "ω: the student's token importance",
    "clusters": "prototype clusters (DPC-KNN)",
}
"""What each map is, in the words of a caption (the report uses the same)."""

ZERO_GATE = 1e-3
"""A gate weight below this is reported as 0: the magnification did not shape the prediction."""

DPI = 100


@dataclass(frozen=True)
class FigureInfo:
    """What a heatmap figure shows: panel names, pixel sizes, which panels carry a colour bar."""

    panels: list[str]
    image_size: tuple[int, int]
    slide_size: tuple[int, int]
    colorbars: list[str] = field(default_factory=list)
    legends: list[str] = field(default_factory=list)
    title: str = ""
    panel_boxes: dict[str, list[int]] = field(default_factory=dict)
    """Panel name → [left, top, width, height] of its slide picture in the figure, in px."""


def gate_text(mag: str, gates: Mapping[str, float] | None) -> str:
    """'gate weight of 20x: 0.62 (10x 0.38)', saying so when the weight is (about) 0."""
    if not gates or mag not in gates:
        return ""
    g = float(gates[mag])
    others = ", ".join(f"{m} {float(v):.2f}" for m, v in gates.items() if m != mag)
    text = f"gate weight of {mag}: {g:.2f}" + (f" ({others})" if others else "")
    if g < ZERO_GATE:
        text += (f" — 0: the {mag} expert did not contribute to this prediction; the map shows "
                 "where it looked, not what was used")
    return text


ATTENTION_MAPS = ("T", "E")
"""Maps that are distributions over the patient's tiles (sum 1 over the bag): a uniform weight exists."""


def _scale_note(name: str, tm: TileMap, n_bag: int | None) -> str:
    """The raw range of the weights; for an attention map, next to the uniform weight 1/N."""
    if tm.raw is None:
        return ""
    raw = tm.raw[np.isfinite(tm.raw)]
    if raw.size == 0:
        return ""
    note = f"weights on this slide {raw.min():.2g} – {raw.max():.2g}"
    if name in ATTENTION_MAPS and n_bag:
        note += f"; uniform attention would be 1/{n_bag} = {1.0 / n_bag:.2g}"
    return note


def heatmap_figure(
    thumbnail_rgb: np.ndarray,
    tile_xy_level0: np.ndarray,
    tile_size0: float,
    maps: Mapping[str, TileMap],
    slide_mpp: float,
    thumb_mpp: float,
    title_lines: Sequence[str],
    *,
    tissue: np.ndarray | None = None,
    n_tiles_label: str = "tiles",
    n_bag: int | None = None,
) -> tuple[Image.Image, FigureInfo]:
    """Compose the figure (module docstring). ``maps``: panel name → ``TileMap`` (left to right);
    ``n_tiles_label``: how the colour bar names the tiles ranked (e.g. "20x tiles of the patient");
    ``n_bag``: the patient's tiles at this magnification (the uniform attention is 1/n_bag)."""
    h, w = thumbnail_rgb.shape[:2]
    names = list(maps)
    pad, title_h, panel_title_h, bar_h = 20, 22 * len(title_lines) + 16, 30, 86
    fig_w = len(names) * w + (len(names) + 1) * pad
    fig_h = title_h + panel_title_h + h + bar_h
    fig = Figure(figsize=(fig_w / DPI, fig_h / DPI), dpi=DPI, facecolor="white")
    for i, line in enumerate(title_lines):
        fig.text(pad / fig_w, 1 - (12 + 22 * i) / fig_h, line, ha="left", va="top",
                 fontsize=13 if i == 0 else 11, weight="bold" if i == 0 else "normal")
    colorbars, legends, boxes = [], [], {}
    for k, name in enumerate(names):
        tm = maps[name]
        left = pad + k * (w + pad)
        boxes[name] = [left, title_h + panel_title_h, w, h]
        img = heatmap_overlay(thumbnail_rgb, tile_xy_level0, tile_size0, tm.values, slide_mpp,
                              thumb_mpp, tissue=tissue, **tm.style)
        ax = fig.add_axes((left / fig_w, bar_h / fig_h, w / fig_w, h / fig_h))
        ax.imshow(np.asarray(img), interpolation="nearest")
        ax.set_axis_off()
        fig.text((left + 2) / fig_w, (bar_h + h + 8) / fig_h, MAP_TITLES.get(name, name),
                 ha="left", va="bottom", fontsize=12, weight="bold")
        if tm.categories:
            counts = np.bincount(tm.values[np.isfinite(tm.values)].astype(int), minlength=tm.categories)
            cmap = tm.style["cmap"]
            handles = [Patch(color=cmap(j / max(tm.categories - 1, 1)),
                             label=f"prototype {j + 1} ({counts[j]} tiles)")
                       for j in range(tm.categories)]
            fig.legend(handles=handles, loc="upper left", ncols=min(tm.categories, 4), frameon=False,
                       bbox_to_anchor=(left / fig_w, (bar_h - 4) / fig_h), fontsize=10)
            legends.append(name)
        else:
            cax = fig.add_axes((left / fig_w, (bar_h - 28) / fig_h, min(w, 420) / fig_w, 14 / fig_h))
            sm = _mappable(tm)
            bar = fig.colorbar(sm, cax=cax, orientation="horizontal")
            bar.set_ticks([0, 25, 50, 75, 100])
            bar.ax.tick_params(labelsize=9)
            fig.text(left / fig_w, (bar_h - 62) / fig_h,
                     f"colour: percentile among the {n_tiles_label} (0 = lowest, 100 = highest)",
                     ha="left", va="bottom", fontsize=10)
            note = _scale_note(name, tm, n_bag)
            if note:
                fig.text(left / fig_w, (bar_h - 78) / fig_h, note, ha="left", va="bottom", fontsize=9,
                         color="#444")
            colorbars.append(name)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    out = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return out, FigureInfo(names, (out.width, out.height), (w, h), colorbars, legends,
                           " | ".join(title_lines), boxes)


def _mappable(tm: TileMap) -> ScalarMappable:
    cmap = tm.style.get("cmap", SEQUENTIAL_CMAP)
    return ScalarMappable(norm=Normalize(0, 100), cmap=cmap)
