"""The words of a prediction (``describe``) and its one-page summary (``summary.html``).

``describe`` is what ``duopath predict`` prints: the prediction, its percentile among the training
patients' risks, the risk-group threshold and what the scale means, then every out-of-distribution
warning. The HTML page says the same above the heatmap figures, self-contained (images inline),
so it can be attached to a case as one file.
"""

from __future__ import annotations

import html
from pathlib import Path

from duopath.io import write_text
from duopath.report.html_parts import CSS, image_file_png, png_data_uri


def describe(result: dict) -> list[str]:
    """Plain-language lines of a ``prediction.json`` (module docstring)."""
    lines = []
    if result.get("risk") is not None:
        risk, thr, pct = result["risk"], result.get("risk_threshold"), result.get("risk_percentile")
        where = (f"; {pct:.0f}th percentile of the risks the model gave its {result['n_training_patients']} "
                 "training patients" if pct is not None else "; no training risks stored: percentile unknown")
        lines.append(f"risk {risk:.4g}{where}")
        if thr is not None:
            lines.append(f"risk group {result['risk_group']}: threshold {thr:.4g} (median training risk)")
        lines.append(f"scale: {result.get('risk_scale', '')}")
    if result.get("predicted_class") is not None:
        probs = ", ".join(f"{c} {p:.2f}" for c, p in result["probabilities"].items())
        lines.append(f"predicted class {result['predicted_class']} (probabilities: {probs})")
    ood = result.get("out_of_distribution") or {}
    if ood.get("flag"):
        lines += [f"WARNING, out of distribution: {why}" for why in ood["reasons"]]
    elif ood.get("flag") is None:
        lines += [f"note: {why}" for why in ood.get("reasons", [])]
    else:
        lines.append("within the training distribution (risk range and slide embeddings)")
    return lines


def write_summary(dest: Path, result: dict, out_dir: Path) -> None:
    """``summary.html``: the prediction's lines, the warnings in red, the heatmap figures."""
    esc = html.escape
    items = []
    for line in describe(result):
        cls = ' class="na"' if line.startswith("WARNING") else ""
        items.append(f"<li{cls}>{esc(line)}</li>")
    figs = []
    for name, file in (result.get("heatmaps") or {}).items():
        png = image_file_png(Path(out_dir) / file, 1600, palette=True)
        figs.append(f'<figure><img src="{png_data_uri(png)}" alt="heatmap {esc(name)}">'
                    f"<figcaption>{esc(file)}: the student's token importance ω (colour = percentile "
                    "among the patient's tiles) and its prototype clusters</figcaption></figure>")
    slides = ", ".join(Path(s["slide"]).name for s in result.get("slides", []))
    page = (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>duopath prediction — {esc(slides)}</title><style>{CSS}</style></head><body>"
        f"<h1>duopath prediction — {esc(slides)}</h1>"
        f"<p class=muted>model {esc(str(result.get('model')))} ({esc(str(result.get('variant')))}, fold "
        f"{esc(str(result.get('fold')))}), encoder {esc(str(result.get('encoder')))}, tiles "
        f"{esc(str(result.get('n_tiles')))}, gate weights {esc(str(result.get('gate_weights')))}</p>"
        f"<ul>{''.join(items)}</ul>{''.join(figs)}"
        f"<footer><p>duopath {esc(str((result.get('versions') or {}).get('duopath')))}</p></footer>"
        "</body></html>\n"
    )
    write_text(dest, page)
