"""The report's figure sections: the main models' overlaid KM / ROC first, every model's own plots
folded away, and the heatmap figures the heatmap step chose (``heatmaps.json``).

Kept apart from :mod:`duopath.report.html` (the page and its tables) to keep both modules small.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from duopath.evaluation.collect import LOWER_IS_BETTER, PRIMARY_METRIC, FoldRun, pooled_predictions
from duopath.evaluation.metrics import probability_columns
from duopath.report import plots
from duopath.report.analysis import default_landmark, landmark_calibration, pooled_risk_groups
from duopath.report.heatmap_figure import MAP_TITLES
from duopath.report.html_parts import (
    HEATMAP_SIDE,
    METRIC_LABELS,
    esc,
    figure_html,
    image_file_jpeg,
    image_html,
)

if TYPE_CHECKING:  # ReportInputs lives in the page module, which imports this one
    from duopath.report.html import ReportInputs

log = logging.getLogger(__name__)


def unit_of(inp: ReportInputs) -> str:
    """The time unit to print ("time unit not configured" when the report was not told it)."""
    return inp.time_unit or "(time unit not configured)"


def main_models(inp: ReportInputs, task: str) -> list[str]:
    """The models of the overlaid plots: the main model, the student, and the best other model by
    the primary metric's fold-mean (ablations and the distillation ablation are left to the tables)."""
    models = list(inp.runs[task])
    ref = inp.reference
    out = [m for m in models if m == ref] + [m for m in models if m == "student"]
    others = [m for m in models
              if m not in out and not m.startswith(ref + "_") and not m.startswith("student")]
    primary = PRIMARY_METRIC.get(task)
    summ = inp.summary[(inp.summary["task"] == task) & (inp.summary["metric"] == primary)].set_index("model")
    scored = [(float(summ.loc[m, "mean"]), m) for m in others
              if m in summ.index and math.isfinite(float(summ.loc[m, "mean"]))]
    if scored:
        out.append(max(scored)[1] if primary not in LOWER_IS_BETTER else min(scored)[1])
    return out


def _roc_inputs(runs: Sequence[FoldRun]) -> tuple | str:
    """(labels, proba, classes) of the pooled predictions, or why there is no ROC."""
    pooled = pooled_predictions(runs)
    if pooled.empty:
        return "no test predictions"
    cols, classes = probability_columns(pooled)
    if pooled[cols].isna().any().any():
        return "folds predict different class sets"
    return pooled["label"], pooled[cols].to_numpy(float), classes


def plots_section(inp: ReportInputs, task: str) -> str:
    """One overlaid KM with numbers at risk (survival) or one overlaid ROC (classification) of the
    main models first; every model's own KM / calibration / ROC and the training curves below,
    folded away (``<details>``) so the page leads with the comparison."""
    out = []
    runs = inp.runs[task]
    main = main_models(inp, task)
    unit = inp.time_unit
    per_model: list[str] = []
    if task == "survival":
        pooled = {m: pooled_risk_groups(runs[m]) for m in runs}
        out.append(figure_html(
            plots.km_overlay_figure({m: pooled[m] for m in main}, unit),
            f"Kaplan–Meier of {', '.join(main)} (the main model, the student and the best other model "
            f"by fold-mean {METRIC_LABELS.get(PRIMARY_METRIC[task], '')}): solid = high, dashed = low "
            f"predicted risk; time in {unit_of(inp)}; numbers at risk under the plot.",
            "overlaid Kaplan–Meier",
        ))
        try:
            landmark = inp.landmark if inp.landmark is not None else default_landmark(inp.tables)
        except ValueError as err:
            landmark = None
            per_model.append(f"<p>No calibration plots: {esc(err)}.</p>")
        km = [
            figure_html(
                plots.km_figure(pooled[m], m, unit),
                f"{m}: Kaplan–Meier of high vs low predicted risk (pooled test folds; "
                f"threshold = median training risk of each fold)",
                f"Kaplan–Meier {m}",
            )
            for m in runs
        ]
        per_model.append("<h4>Risk groups per model</h4><div class=grid>" + "".join(km) + "</div>")
        if landmark is not None:
            cal = [
                figure_html(
                    plots.calibration_figure(landmark_calibration(r, landmark), m, unit),
                    f"{m}: predicted vs observed survival at t = {landmark:.4g} {unit_of(inp)} "
                    f"(groups of predicted S(t), pooled test folds)",
                    f"calibration {m}",
                )
                for m, r in runs.items()
            ]
            per_model.append("<h4>Calibration</h4><div class=grid>" + "".join(cal) + "</div>")
    else:
        inputs = {m: _roc_inputs(r) for m, r in runs.items()}
        usable = {m: inputs[m] for m in main if not isinstance(inputs[m], str)}
        out.append(figure_html(plots.roc_overlay_figure(usable),
                               f"ROC of {', '.join(usable)} on the pooled test predictions "
                               "(the positive class is named in the plot)", "overlaid ROC"))
        roc = [
            figure_html(plots.message_figure(m, x)) if isinstance(x, str)
            else figure_html(plots.roc_figure(*x, m), f"{m}: ROC of the pooled test predictions", f"ROC {m}")
            for m, x in inputs.items()
        ]
        per_model.append("<h4>ROC per model</h4><div class=grid>" + "".join(roc) + "</div>")
    metric = PRIMARY_METRIC.get(task, "metric")
    curves = [
        figure_html(
            plots.training_curves_figure(
                {x.fold: x.train_log() for x in r}, m, METRIC_LABELS.get(metric, metric)
            ),
            f"{m}: training curves per fold",
            f"training curves {m}",
        )
        for m, r in runs.items()
    ]
    per_model.append("<h4>Training curves</h4><div class=grid>" + "".join(curves) + "</div>")
    out.append("<details><summary>Every model's own plots and training curves</summary>"
               + "".join(per_model) + "</details>")
    return "<h3>Main models compared</h3>" + "".join(out)


HEATMAP_EXPLAINED = (
    "Each figure is one test patient's slide with, side by side, "
    + "; ".join(f"<b>{esc(t.split(':')[0])}</b>{esc(t[len(t.split(':')[0]):])}"
                for t in (MAP_TITLES["T"], MAP_TITLES["E"], MAP_TITLES["omega"]))
    + " (the teacher's T and E maps, or the student's ω and its prototype clusters). Colours are "
    "percentiles among the patient's tiles (yellow = the tiles the model weighted most), painted on "
    "tissue only; the title gives the model, the magnification and its gate weight (0 means that "
    "magnification did not enter the prediction), the prediction and why the heatmap step chose this "
    "patient. Survival risk: higher means shorter predicted survival."
)


def _heatmap_caption(model: str, fold: int, e: Mapping[str, Any]) -> str:
    pred = (f"predicted risk {float(e['risk']):.3g}" if e.get("risk") is not None
            else f"predicted {e.get('pred_label')} (p = {float(e.get('probability') or math.nan):.2f})")
    gate = e.get("gate_weight")
    gate_txt = "" if gate is None else f"; gate weight of {e['magnification']} {float(gate):.2f}" + (
        " (did not contribute)" if float(gate) < 1e-3 else "")
    maps = " and ".join(str(m) for m in e.get("maps", []))
    return (f"{model}, fold {fold}: patient {e['patient_id']}, slide {e['slide_id']} — {e['reason']}; "
            f"{pred}{gate_txt}. {maps} at {e['magnification']}.")


def heatmap_section(inp: ReportInputs, task: str) -> str:
    """The figures the heatmap step chose (``heatmaps.json`` of each fold: highest / lowest risk or
    most confident per class, in that order), up to ``max_heatmaps`` per model, folds in turn."""
    figs, found, shown = [], 0, 0
    for model, runs in inp.runs[task].items():
        per_fold = []
        for r in runs:
            index = r.heatmap_index()
            images = [] if index is None else [e for e in index.get("images", [])
                                                 if (r.directory / "heatmaps" / e["file"]).exists()]
            per_fold.append((r, images))
        found += sum(len(i) for _, i in per_fold)
        picked = [(r, e) for k in range(max((len(i) for _, i in per_fold), default=0))
                  for r, i in per_fold if k < len(i) for e in [i[k]]][: inp.max_heatmaps]
        shown += len(picked)
        for r, e in picked:
            path = r.directory / "heatmaps" / e["file"]
            try:
                jpeg = image_file_jpeg(path, HEATMAP_SIDE)
            except OSError as err:  # an unreadable picture is reported, not fatal for the report
                log.warning("heatmap %s unreadable: %s", path, err)
                figs.append(f"<p class=na>{esc(model)} fold {r.fold}: {esc(path.name)} unreadable "
                            f"({esc(err)})</p>")
                continue
            figs.append(image_html(jpeg, _heatmap_caption(model, r.fold, e),
                                   f"heatmap {model} {path.stem}", mime="image/jpeg"))
    if not found:
        body = ("<p class=muted>No heatmap figures yet (no heatmaps.json under the models' fold "
                "directories).</p>")
    else:
        body = f"<p>{HEATMAP_EXPLAINED}</p>" + "".join(figs)
        if found > shown:
            body += (f"<p class=muted>{found - shown} more heatmap figures not shown "
                     "(report.heatmap_patients).</p>")
    return "<h3>Heatmaps</h3>" + body
