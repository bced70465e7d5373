"""The report's figures (matplotlib, no pyplot: figures are built directly on the Agg canvas).

Why no ``pyplot``: the report runs inside Snakemake jobs and tests, where pyplot's global figure
registry and backend selection are shared state (and a leaked figure is a leaked megabyte). A
``matplotlib.figure.Figure`` rendered by ``FigureCanvasAgg`` needs neither a display nor cleanup.

Each ``*_figure`` function draws one model's picture from already computed numbers
(:mod:`duopath.report.analysis`, :mod:`duopath.evaluation`); :func:`figure_png` renders it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from numpy.typing import ArrayLike
from sklearn.metrics import roc_auc_score, roc_curve

from duopath.evaluation.result import MetricResult
from duopath.report.analysis import Calibration, PooledRiskGroups

GROUP_COLOURS = {"low": "#1f77b4", "high": "#d62728"}


def new_figure(width: float = 4.8, height: float = 3.6) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """PNG bytes of a figure, without the 'Software' text chunk (keeps the report reproducible)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def _fmt_p(p: MetricResult) -> str:
    if not p.ok:
        return "n/a"
    return f"{p.value:.2g}" if p.value >= 1e-4 else "< 1e-4"


def message_figure(title: str, message: str) -> Figure:
    """A small figure that says why a plot could not be drawn (keeps the grid of plots aligned)."""
    fig = new_figure(4.8, 1.6)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    ax.text(
        0.5,
        0.5,
        message,
        ha="center",
        va="center",
        wrap=True,
        fontsize=9,
        color="#555555",
        transform=ax.transAxes,
    )
    return fig


# --------------------------------------------------------------------------- Kaplan–Meier


def km_figure(pooled: PooledRiskGroups, title: str, time_unit: str = "") -> Figure:
    """KM curves (95 % CI bands, censor ticks) of the low/high risk groups with log-rank p and HR."""
    if pooled.groups is None:
        return message_figure(title, f"no risk groups: {pooled.reason}")
    g = pooled.groups
    fig = new_figure()
    ax = fig.add_subplot()
    for name in ("low", "high"):
        km = g.km[name]
        n = g.n_low if name == "low" else g.n_high
        ev = g.events_low if name == "low" else g.events_high
        if km is None:
            continue
        t = np.concatenate([[0.0], km.time])
        s = np.concatenate([[1.0], km.survival])
        lo = np.concatenate([[1.0], km.ci_low])
        hi = np.concatenate([[1.0], km.ci_high])
        colour = GROUP_COLOURS[name]
        ax.step(t, s, where="post", color=colour, label=f"{name} risk (n={n}, {ev} events)")
        ax.fill_between(t, lo, hi, step="post", color=colour, alpha=0.15, linewidth=0)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(left=0)
    ax.set_xlabel(f"time{f' ({time_unit})' if time_unit else ''}")
    ax.set_ylabel("survival probability")
    hr = g.hazard_ratio
    hr_text = f"HR {hr.value:.2f} ({g.hr_ci_low:.2f}–{g.hr_ci_high:.2f})" if hr.ok else "HR n/a"
    ax.set_title(f"{title}\nlog-rank p = {_fmt_p(g.logrank_p)}, {hr_text}", fontsize=10)
    ax.legend(loc="best", fontsize=8, frameon=True, framealpha=0.8)
    return fig


MODEL_COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]


def at_risk_counts(groups: PooledRiskGroups, ticks: Sequence[float]) -> dict[str, list[int]]:
    """Patients still at risk (time ≥ t) at each tick, per risk group ("low", "high")."""
    out = {}
    for name in ("low", "high"):
        km = None if groups.groups is None else groups.groups.km[name]
        if km is None:
            out[name] = [0] * len(ticks)
            continue
        idx = np.searchsorted(km.time, np.asarray(ticks, float), side="left")
        out[name] = [int(km.n_at_risk[i]) if i < km.time.size else 0 for i in idx]
    return out


def km_overlay_figure(pooled: Mapping[str, PooledRiskGroups], time_unit: str = "") -> Figure:
    """The main models' high (solid) and low (dashed) risk groups on one axis, numbers at risk below.

    Each model has one colour; its legend entry carries the log-rank p and the HR of its groups.
    """
    usable = {m: g for m, g in pooled.items() if g.groups is not None}
    if not usable:
        return message_figure("Kaplan–Meier", "no model has risk groups: "
                              + "; ".join(f"{m}: {g.reason}" for m, g in pooled.items()))
    fig = new_figure(10.0, 4.2 + 0.32 * 2 * len(usable))
    ax, tab = fig.subplots(2, 1, height_ratios=[4.0, 0.34 * 2 * len(usable)], sharex=True)
    t_max = 0.0
    for colour, (m, g) in zip(MODEL_COLOURS * 3, usable.items(), strict=False):
        rg = g.groups
        hr = rg.hazard_ratio
        hr_text = f"HR {hr.value:.2f}" if hr.ok else "HR n/a"
        for name, style in (("high", "-"), ("low", "--")):
            km = rg.km[name]
            if km is None:
                continue
            t = np.concatenate([[0.0], km.time])
            ax.step(t, np.concatenate([[1.0], km.survival]), where="post", color=colour, linestyle=style,
                    linewidth=1.6)
            t_max = max(t_max, float(km.time.max()))
        ax.plot([], [], color=colour, label=f"{m}: log-rank p {_fmt_p(rg.logrank_p)}, {hr_text}")
    ax.plot([], [], color="#555", linestyle="-", label="solid: high predicted risk")
    ax.plot([], [], color="#555", linestyle="--", label="dashed: low predicted risk")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(0, t_max * 1.02 if t_max > 0 else 1)
    ax.set_ylabel("survival probability")
    ax.set_title("Kaplan–Meier of the pooled test folds: high vs low predicted risk\n"
                 "(each fold's test patients split at the median risk of its own training patients)",
                 fontsize=10)
    # beside the plot: inside the axes it covered the curves
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ticks = np.linspace(0, t_max, 6) if t_max > 0 else np.array([0.0])
    rows = []
    for m, g in usable.items():
        counts = at_risk_counts(g, ticks)
        rows += [(f"{m} high", counts["high"]), (f"{m} low", counts["low"])]
    tab.set_ylim(-0.5, len(rows) - 0.5)
    for i, (_, counts) in enumerate(rows):
        y = len(rows) - 1 - i
        for t, n in zip(ticks, counts, strict=True):
            tab.text(t, y, str(n), ha="center", va="center", fontsize=8)
    tab.set_yticks(range(len(rows)), [r[0] for r in rows][::-1], fontsize=8)
    tab.set_xticks(ticks, [f"{t:.3g}" for t in ticks])
    tab.tick_params(left=False)
    for side in ("top", "right", "left"):
        tab.spines[side].set_visible(False)
    tab.set_title("numbers at risk", fontsize=9, loc="left")
    tab.set_xlabel(f"time ({time_unit})" if time_unit else "time (unit not configured)")
    return fig


# --------------------------------------------------------------------------- ROC


def roc_overlay_figure(curves: Mapping[str, tuple[ArrayLike, ArrayLike, Sequence[str]]]) -> Figure:
    """The models' ROC curves of the pooled test predictions on one axis.

    ``curves``: model → (labels, proba [N, C], class names). Binary: the curve of the positive
    (second) class, named in the title; several classes: the micro-average of the one-vs-rest
    curves (every (patient, class) pair is one decision), said in the title.
    """
    fig = new_figure(5.6, 5.0)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1)
    positives = set()
    for colour, (m, (labels, proba, names)) in zip(MODEL_COLOURS * 3, curves.items(), strict=False):
        y = np.asarray([str(v) for v in np.asarray(labels)])
        p = np.asarray(proba, dtype=float)
        names = [str(c) for c in names]
        if len(names) == 2:
            truth, score = y == names[1], p[:, 1]
            positives.add(f"positive class: {names[1]} (vs {names[0]})")
        else:
            truth = (y[:, None] == np.asarray(names)[None, :]).ravel()
            score = p.ravel()
            positives.add("micro-average of one-vs-rest over the classes")
        if truth.all() or not truth.any():
            continue
        fpr, tpr, _ = roc_curve(truth, score)
        ax.plot(fpr, tpr, color=colour, label=f"{m} (pooled AUC {roc_auc_score(truth, score):.3f})")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_aspect("equal")
    ax.set_title("ROC of the pooled test predictions\n" + "; ".join(sorted(positives)), fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8, frameon=False)
    return fig


def roc_figure(labels: ArrayLike, proba: ArrayLike, class_names: Sequence[str], title: str) -> Figure:
    """One-vs-rest ROC per class (binary: the positive, second class) of pooled predictions."""
    y = np.asarray([str(v) for v in np.asarray(labels)])
    p = np.asarray(proba, dtype=float)
    names = [str(c) for c in class_names]
    if p.ndim != 2 or p.shape != (y.size, len(names)):
        raise ValueError(f"proba must be [{y.size}, {len(names)}], got {p.shape}")
    fig = new_figure(4.2, 4.0)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1)
    shown = [1] if len(names) == 2 else range(len(names))
    skipped = []
    for i in shown:
        positive = y == names[i]
        if positive.all() or not positive.any():
            skipped.append(names[i])
            continue
        fpr, tpr, _ = roc_curve(positive, p[:, i])
        ax.plot(fpr, tpr, label=f"{names[i]} (pooled AUC {roc_auc_score(positive, p[:, i]):.3f})")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_aspect("equal")
    note = f"\n(no ROC for {', '.join(skipped)}: one class only)" if skipped else ""
    which = (f"positive class: {names[1]} (vs {names[0]})" if len(names) == 2
             else "one curve per class, that class vs the rest")
    ax.set_title(f"{title}: pooled test folds\n{which}{note}", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8, frameon=False)
    return fig


# --------------------------------------------------------------------------- calibration


def calibration_figure(cal: Calibration, title: str, time_unit: str = "") -> Figure:
    """Mean predicted S(landmark) per group against the group's KM estimate (with 95 % CI)."""
    when = f"t = {cal.landmark:.4g}{f' {time_unit}' if time_unit else ''}"
    if cal.table is None:
        return message_figure(title, f"no calibration at {when}: {cal.reason}")
    tab = cal.table
    fig = new_figure(4.2, 4.0)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1, label="ideal")
    ok = tab["observed"].notna()
    d = tab[ok]
    ax.errorbar(
        d["predicted"],
        d["observed"],
        yerr=[d["observed"] - d["ci_low"], d["ci_high"] - d["observed"]],
        fmt="o",
        color="#2c7bb6",
        ecolor="#abd9e9",
        capsize=2,
        label="group (KM, 95 % CI)",
    )
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel(f"predicted S({when})")
    ax.set_ylabel("observed S (Kaplan–Meier)")
    missing = int((~ok).sum())
    note = f"\n{missing} group(s) without follow-up to t" if missing else ""
    ax.set_title(f"{title}: {len(tab)} groups, n={cal.n_patients}{note}", fontsize=10)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return fig


# --------------------------------------------------------------------------- training curves


def training_curves_figure(logs: Mapping[int, pd.DataFrame], title: str, metric_label: str) -> Figure:
    """Per fold: train and validation loss, and the validation metric; the selected epoch marked."""
    usable = {k: v for k, v in logs.items() if v is not None and not v.empty and "epoch" in v.columns}
    if not usable:
        return message_figure(title, "no train_log.csv")
    fig = new_figure(8.0, 3.2)
    ax_loss, ax_metric = fig.subplots(1, 2)
    cycle = [f"C{i % 10}" for i in range(len(usable))]
    for colour, (fold, df) in zip(cycle, sorted(usable.items()), strict=True):
        _curve(ax_loss, df, "train_loss", colour, "-", f"fold {fold} train")
        _curve(ax_loss, df, "val_loss", colour, "--", f"fold {fold} val")
        _curve(ax_metric, df, "val_metric", colour, "-", f"fold {fold}")
        if "selected" in df.columns:
            sel = df[df["selected"].astype(str).str.lower().isin(["true", "1"])]
            for _, row in sel.iterrows():
                for ax, col in ((ax_loss, "val_loss"), (ax_metric, "val_metric")):
                    if col in df.columns and math.isfinite(float(row[col])):
                        ax.plot(row["epoch"], row[col], marker="*", color=colour, markersize=10)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss (solid: train, dashed: val)")
    ax_metric.set_xlabel("epoch")
    ax_metric.set_ylabel(f"validation {metric_label}")
    if not any(pd.to_numeric(df.get("val_metric", pd.Series(dtype=float)), errors="coerce").notna().any()
               for df in usable.values()):
        ax_metric.text(0.5, 0.5, f"validation {metric_label} undefined at every epoch\n(too few "
                       "validation patients or events)", ha="center", va="center", fontsize=8,
                       color="#555555", transform=ax_metric.transAxes)
        ax_metric.set_yticks([])
    # one legend under both panels (fold colours): inside an axes it covered the curves
    handles = [Line2D([], [], color=c, label=f"fold {fold}")
               for c, fold in zip(cycle, sorted(usable), strict=True)]
    handles += [Line2D([], [], color="#555", linestyle="-", label="train"),
                Line2D([], [], color="#555", linestyle="--", label="validation")]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 8), fontsize=8,
               frameon=False)
    fig.suptitle(f"{title} (★ = selected epoch)", fontsize=10)
    return fig


def _curve(ax: Axes, df: pd.DataFrame, col: str, colour: str, style: str, label: str) -> None:
    if col in df.columns:
        ax.plot(
            df["epoch"],
            pd.to_numeric(df[col], errors="coerce"),
            color=colour,
            linestyle=style,
            linewidth=1.2,
            label=label,
        )
