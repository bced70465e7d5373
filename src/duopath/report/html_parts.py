"""Building blocks of the HTML report: labels, inline CSS, escaping, tables, embedded images.

Kept apart from :mod:`duopath.report.html` (which assembles the page's sections) so the page
module stays about what the report says, not how a table or a PNG is written.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from duopath.evaluation.collect import (
    LOWER_IS_BETTER,
)
from duopath.report import plots

log = logging.getLogger(__name__)


METRIC_LABELS = {
    "c_harrell": "Harrell's C",
    "c_uno": "Uno's C",
    "td_auc_mean": "mean td-AUC",
    "ibs": "IBS",
    "ibs_interp": "IBS interpolated",
    "ibs_recal": "IBS recalibrated",
    "ibs_km": "IBS Kaplan–Meier null",
    "auc": "AUC",
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "f1_macro": "macro F1",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
}
METRIC_HELP = {
    "c_harrell": "Harrell's concordance index of the risk score (higher is better; 0.5 = random)",
    "c_uno": "Uno's IPCW concordance, truncated at the 75th percentile of the fold's training times",
    "td_auc_mean": "cumulative/dynamic time-dependent AUC, averaged over an interior time grid",
    "ibs": "integrated Brier score of the predicted survival curves (lower is better)",
    "ibs_interp": "IBS of the model's curves with a constant hazard within each time bin",
    "ibs_recal": "IBS of the risk score recalibrated on the inner validation patients",
    "ibs_km": "IBS of the training patients' Kaplan–Meier curve given to every test patient: the "
              "no-information reference",
    "auc": "ROC AUC (binary) or macro one-vs-rest AUC (multi-class)",
    "accuracy": "fraction of patients whose most probable class is right",
    "balanced_accuracy": "mean per-class recall",
    "f1_macro": "F1 averaged over classes",
    "sensitivity": "recall of the positive class (binary) / mean recall (multi-class)",
    "specificity": "TN/(TN+FP) of the positive class (binary) / macro one-vs-rest (multi-class)",
}
#: What a teacher ablation suffix means (``duopath.training.variants``); unknown suffixes show none.
ABLATION_HELP = {
    "no_cgc": "without confidence-guided gradient coordination",
    "no_igc": "without the inter-magnification consistency loss",
    "one_group": "no disentanglement: all genes one group",
    "rna_mean": "RNA replaced by its training mean (does the model use RNA?)",
    "10x": "10x only (single magnification)",
    "20x": "20x only (single magnification)",
}
TASK_TITLES = {"survival": "Survival", "classification": "Classification"}
MAX_IMAGE_SIDE = 1200
HEATMAP_SIDE = 1600  # a heatmap figure (two panels side by side): a reader can zoom into the tissue

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0 auto;
max-width:1200px;padding:1em 2em;color:#222;line-height:1.4}
h1{border-bottom:2px solid #444}h2{border-bottom:1px solid #bbb;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right;vertical-align:top}
th{background:#f2f2f2}td.l,th.l{text-align:left}
.na{color:#a33;cursor:help;border-bottom:1px dotted #a33}.partial{color:#a60;cursor:help}
sup.fn{color:#a33}ol.notes{font-size:.85em;color:#555}
.grid{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0;max-width:100%}
figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.85em;color:#555;max-width:520px}
.muted{color:#666;font-size:.9em}footer{margin-top:3em;border-top:1px solid #bbb;font-size:.85em;color:#555}
nav a{margin-right:1em}details{margin:1em 0}summary{cursor:pointer;font-weight:600}
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


# --------------------------------------------------------------------------- building blocks


class Notes:
    """Numbered notes under a table: each distinct reason once, referenced by a superscript."""

    def __init__(self) -> None:
        self._numbers: dict[str, int] = {}

    def mark(self, reason: str) -> str:
        n = self._numbers.setdefault(reason, len(self._numbers) + 1)
        return f'<sup class="fn">[{n}]</sup>'

    def na(self, reason: str) -> str:
        """'n/a' with the reason as tooltip and as a numbered note."""
        reason = reason or "undefined"
        return f'<span class="na" title="{esc(reason)}">n/a</span>{self.mark(reason)}'

    def render(self) -> str:
        if not self._numbers:
            return ""
        items = "".join(f'<li value="{n}">{esc(r)}</li>' for r, n in self._numbers.items())
        return f'<ol class="notes">{items}</ol>'


def table(header: Sequence[str], rows: Iterable[Sequence[str]], left: int = 1) -> str:
    """An HTML table from pre-escaped cells; the first ``left`` columns are left-aligned."""

    def cells(tag: str, values: Sequence[str]) -> str:
        return "".join(f"<{tag}{' class=l' if i < left else ''}>{v}</{tag}>" for i, v in enumerate(values))

    body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
    return f"<table><thead><tr>{cells('th', header)}</tr></thead><tbody>{body}</tbody></table>"


def png_data_uri(png: bytes) -> str:
    return data_uri(png, "image/png")


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def figure_html(fig: Figure, caption: str = "", alt: str = "") -> str:
    return image_html(plots.figure_png(fig), caption, alt or caption)


def image_html(data: bytes, caption: str = "", alt: str = "", mime: str = "image/png") -> str:
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{data_uri(data, mime)}" alt="{esc(alt)}">{cap}</figure>'


def image_file_png(path: Path, max_side: int = MAX_IMAGE_SIDE, *, palette: bool = False) -> bytes:
    """An image file re-encoded as PNG and shrunk to ``max_side`` (keeps the report's size sane).

    ``palette``: 256-colour PNG, about a third of the bytes for colour-mapped overlays.
    """
    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((max_side, max_side))
        if palette:
            im = im.quantize(colors=256)
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def image_file_jpeg(path: Path, max_side: int = MAX_IMAGE_SIDE, quality: int = 85) -> bytes:
    """An image file re-encoded as JPEG and shrunk to ``max_side``.

    Why for heatmaps: they are tissue photographs under a smooth colour map, where JPEG at
    quality 85 is about a third of a 256-colour PNG's bytes with no visible loss; a demo report
    with ~60 heatmaps went from 16 MB (PNG) to a page a browser opens without stalling.
    Figures with text and thin lines (plots) stay PNG.
    """
    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((max_side, max_side))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def fmt_p(value: float) -> str:
    return "&lt; 1e-4" if value < 1e-4 else f"{value:.3g}"


def metric_label(metric: str) -> str:
    arrow = "↓" if metric in LOWER_IS_BETTER else "↑"
    label = esc(METRIC_LABELS.get(metric, metric))
    return f'<span title="{esc(METRIC_HELP.get(metric, metric))}">{label} {arrow}</span>'


# --------------------------------------------------------------------------- inputs


#: The label of the planted truth's row in the model tables (demo cohorts).
CEILING_LABEL = "planted truth (ceiling)"


def ceiling_row(ceiling: pd.DataFrame | None, task: str, metrics: Sequence[str], extra: int = 0) -> list[str]:
    """The planted truth's row of a model table: its fold-mean ± std of each metric it has (the
    ranking ones: Harrell's C, AUC), "—" for the others and the ``extra`` trailing columns.

    ``ceiling``: ``reference.csv`` of ``duopath evaluate --truth`` (all tasks); an empty list when
    there is none or it has no row for ``task`` (a user cohort has no planted truth).
    """
    from duopath.evaluation.compare import format_mean_std
    from duopath.evaluation.reference import summarize_reference

    if ceiling is None or not (ceiling["task"] == task).any():
        return []
    summ = summarize_reference(ceiling[ceiling["task"] == task]).set_index("metric")
    cells = [f"<i>{esc(CEILING_LABEL)}</i>"]
    for metric in metrics:
        if metric in summ.index and int(summ.loc[metric, "n_defined"]) > 0:
            row = summ.loc[metric]
            cells.append(f"<i>{esc(format_mean_std(float(row['mean']), float(row['std'])))}</i>")
        else:
            cells.append("—")
    return cells + ["—"] * extra
