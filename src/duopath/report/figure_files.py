"""The report's figures as PNG files, for ``snakemake --report`` (which shows files, not a page).

Why from the finished page and not by drawing again: ``report.html`` is the one place that
decides which figures exist (KM and calibration per model, ROC, training curves, paired plots);
taking its embedded PNGs byte for byte means the Snakemake report shows exactly those images,
with nothing to keep in step when the page changes. Heatmaps are left out: the heatmaps rule
reports them itself, at full size.
"""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

from duopath.io import atomic_path

_PNG_URI = "data:image/png;base64,"
SKIP_ALT_PREFIXES = ("heatmap ",)


class _Figures(HTMLParser):
    """Collects (section id, alt text, PNG bytes) of every embedded PNG, in page order."""

    def __init__(self) -> None:
        super().__init__()
        self.section = "page"
        self.found: list[tuple[str, str, bytes]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section" and a.get("id"):
            self.section = str(a["id"])
        elif tag == "img" and (a.get("src") or "").startswith(_PNG_URI):
            alt = a.get("alt") or "figure"
            if not alt.startswith(SKIP_ALT_PREFIXES):
                self.found.append((self.section, alt, base64.b64decode(a["src"][len(_PNG_URI):])))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "figure"


def report_figures(page: str) -> dict[str, bytes]:
    """``{file name: PNG bytes}`` of the page's figures: ``<section>.<alt text>.png``, unique."""
    parser = _Figures()
    parser.feed(page)
    out: dict[str, bytes] = {}
    for section, alt, png in parser.found:
        stem = f"{_slug(section)}.{_slug(alt)}"
        name, n = f"{stem}.png", 1
        while name in out:
            n += 1
            name = f"{stem}_{n}.png"
        out[name] = png
    return out


def write_report_figures(page: str, out_dir: Path | str) -> list[Path]:
    """Write the page's figures into ``out_dir`` (replaced as a whole, atomically)."""
    figures = report_figures(page)
    with atomic_path(out_dir, is_dir=True) as tmp:
        tmp.mkdir(parents=True)
        for name, png in figures.items():
            (tmp / name).write_bytes(png)
    return [Path(out_dir) / name for name in figures]
