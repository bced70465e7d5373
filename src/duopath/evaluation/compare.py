"""Across folds and models: the long per-fold table, mean ± std, paired tests, bootstrap CI.

The long table (one row per model × fold × metric, columns ``LONG_COLUMNS``) is the single
source for ``metrics.csv``, the report's comparison table and the paired comparisons, so an
undefined fold keeps its reason all the way to the report instead of silently vanishing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from duopath.evaluation.result import MetricResult, quiet_undefined, undefined

logger = logging.getLogger(__name__)

LONG_COLUMNS = ("model", "fold", "metric", "value", "reason")


# --------------------------------------------------------------------------- tables


def long_table(model: str, fold: int, metrics: Mapping[str, MetricResult]) -> pd.DataFrame:
    """Rows (model, fold, metric, value, reason) for one model's metrics on one fold."""
    rows = [(model, fold, name, res.value, res.reason) for name, res in metrics.items()]
    return pd.DataFrame(rows, columns=list(LONG_COLUMNS))


def summarize_folds(long: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over folds per (model, metric).

    Columns: model, metric, mean, std, n_folds, n_defined, reasons. ``std`` is the sample
    standard deviation (ddof=1: the folds are a sample of possible splits; NaN with one
    defined fold). Undefined folds are left out of mean and std, counted in
    ``n_folds - n_defined``, and their distinct reasons joined in ``reasons`` so the report can
    say '0.71 ± 0.04 (4/5 folds: no events in fold 3)' rather than hide the gap.
    """
    missing = set(LONG_COLUMNS) - set(long.columns)
    if missing:
        raise ValueError(f"long table lacks columns {sorted(missing)}")
    dup = long.duplicated(["model", "fold", "metric"])
    if dup.any():
        raise ValueError(
            f"duplicate (model, fold, metric) rows: {long.loc[dup, ['model', 'fold', 'metric']].values[:3]}"
        )
    rows = []
    for (model, metric), g in long.groupby(["model", "metric"], sort=False):
        v = g["value"].to_numpy(dtype=float)
        ok = ~np.isnan(v)
        reasons = sorted({f"fold {f}: {r}" for f, r in zip(g["fold"][~ok], g["reason"][~ok], strict=True)})
        rows.append(
            {
                "model": model,
                "metric": metric,
                "mean": float(v[ok].mean()) if ok.any() else math.nan,
                "std": float(v[ok].std(ddof=1)) if ok.sum() >= 2 else math.nan,
                "n_folds": int(v.size),
                "n_defined": int(ok.sum()),
                "reasons": "; ".join(reasons),
            }
        )
    return pd.DataFrame(rows, columns=["model", "metric", "mean", "std", "n_folds", "n_defined", "reasons"])


def format_mean_std(mean: float, std: float, digits: int = 3) -> str:
    """'0.712 ± 0.034'; 'n/a' when undefined; no ± part when std is NaN (a single fold)."""
    if math.isnan(mean):
        return "n/a"
    if math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


# --------------------------------------------------------------------------- paired fold tests


@dataclass(frozen=True)
class PairedTest:
    """Paired comparison of model A vs B over the same folds; differences are A - B."""

    folds: tuple[Hashable, ...]  # folds used (both values defined)
    dropped: tuple[Hashable, ...]  # folds where either value was NaN
    mean_difference: float
    t_statistic: float
    t_p: MetricResult
    wilcoxon_statistic: float
    wilcoxon_p: MetricResult
    caveat: str
    # 95 % t interval of the mean fold difference (mean ± t_{0.975, n-1}·sd/√n); NaN when the
    # t-test is undefined. Shares the t-test's anti-conservatism (folds share training patients).
    ci_low: float = math.nan
    ci_high: float = math.nan


def _small_n_caveat(n: int) -> str:
    # exact two-sided signed-rank p has floor 2 / 2^n (all n differences of one sign, no ties)
    floor = 2.0 / 2**n if n > 0 else math.nan
    return (
        f"n={n} folds: fold metrics share training patients, so they are not independent and both "
        f"tests tend to be anti-conservative; the smallest attainable two-sided Wilcoxon p with "
        f"n={n} is {floor:.3g}. Read the p-values as descriptive, alongside the bootstrap CI."
    )


def _as_fold_series(values: Mapping[Hashable, float] | pd.Series, name: str) -> pd.Series:
    s = pd.Series(values, dtype=float) if not isinstance(values, pd.Series) else values.astype(float)
    if s.index.has_duplicates:
        raise ValueError(f"model {name}: duplicated folds {s.index[s.index.duplicated()].tolist()}")
    return s


def paired_fold_test(
    a: Mapping[Hashable, float] | pd.Series, b: Mapping[Hashable, float] | pd.Series
) -> PairedTest:
    """Paired t-test (``scipy.stats.ttest_rel``) and Wilcoxon signed-rank (``scipy.stats.wilcoxon``,
    zero differences dropped) on per-fold metric values keyed by fold.

    Refuses (ValueError) when the two models were not scored on the same folds: pairing fold 3
    of one model with fold 4 of another is meaningless. Folds where either value is NaN are
    dropped and listed.
    """
    sa, sb = _as_fold_series(a, "A"), _as_fold_series(b, "B")
    if set(sa.index) != set(sb.index):
        only_a = sorted(set(sa.index) - set(sb.index), key=str)
        only_b = sorted(set(sb.index) - set(sa.index), key=str)
        raise ValueError(f"models were scored on different folds: only A {only_a}, only B {only_b}")
    sb = sb.loc[sa.index]
    both = sa.notna() & sb.notna()
    dropped = tuple(sa.index[~both])
    if dropped:
        logger.warning("paired test: folds %s dropped (metric undefined for a model)", list(dropped))
    diff = (sa[both] - sb[both]).to_numpy()
    n = diff.size
    nan = math.nan
    folds = tuple(sa.index[both])
    caveat = _small_n_caveat(n)
    if n < 2:
        why = f"{n} fold(s) with both values defined, need >= 2"
        return PairedTest(
            folds,
            dropped,
            float(diff.mean()) if n else nan,
            nan,
            undefined("paired t p", why),
            nan,
            undefined("Wilcoxon p", why),
            caveat,
        )
    if np.all(diff == 0):
        why = "the two models have identical values on every fold"
        return PairedTest(
            folds, dropped, 0.0, nan, undefined("paired t p", why), nan, undefined("Wilcoxon p", why), caveat
        )
    ci_low = ci_high = nan
    if np.ptp(diff) == 0:
        t_stat, t_p = nan, undefined("paired t p", "the difference is the same on every fold: zero variance")
    else:
        res = stats.ttest_rel(sa[both].to_numpy(), sb[both].to_numpy())
        t_stat, t_p = float(res.statistic), MetricResult(float(res.pvalue))
        half = float(stats.t.ppf(0.975, n - 1) * diff.std(ddof=1) / math.sqrt(n))
        ci_low, ci_high = float(diff.mean()) - half, float(diff.mean()) + half
    w = stats.wilcoxon(diff, zero_method="wilcox")
    return PairedTest(
        folds,
        dropped,
        float(diff.mean()),
        t_stat,
        t_p,
        float(w.statistic),
        MetricResult(float(w.pvalue)),
        caveat,
        ci_low,
        ci_high,
    )


def compare_models(long: pd.DataFrame, model_a: str, model_b: str, metric: str) -> PairedTest:
    """:func:`paired_fold_test` of ``metric`` between two models of the long table."""
    series = {}
    for m in (model_a, model_b):
        g = long[(long["model"] == m) & (long["metric"] == metric)]
        if g.empty:
            raise ValueError(f"no rows for model {m!r}, metric {metric!r}")
        series[m] = _as_fold_series(pd.Series(g["value"].to_numpy(float), index=g["fold"].to_numpy()), m)
    return paired_fold_test(series[model_a], series[model_b])


# --------------------------------------------------------------------------- bootstrap


@dataclass(frozen=True)
class BootstrapDifference:
    """Pooled metric of A and B on the same patients, their difference and its bootstrap CI."""

    value_a: MetricResult
    value_b: MetricResult
    difference: MetricResult  # A - B on the observed data
    ci_low: float
    ci_high: float
    level: float
    n_boot: int
    n_valid: int  # replicates where both metrics were defined
    seed: int


PooledMetric = Callable[[pd.DataFrame], MetricResult]


def _replicate_differences(
    a: pd.DataFrame, b: pd.DataFrame, metric: PooledMetric, n_boot: int, seed: int
) -> np.ndarray:
    """metric(A) - metric(B) on ``n_boot`` paired resamples (NaN where either is undefined).

    The resamples are the same seeded row draws either way; a metric with pair sums
    (``metric.pairs``, :mod:`duopath.evaluation.pairwise`) scores all of them at once, any
    other metric is re-run on each resampled frame.
    """
    rng = np.random.default_rng(seed)
    n = len(a)
    draws = np.stack([rng.integers(0, n, n) for _ in range(n_boot)])
    pairs = getattr(metric, "pairs", None)
    if pairs is not None:
        return pairs(a).bootstrap(draws) - pairs(b).bootstrap(draws)
    diffs = np.full(n_boot, np.nan)
    with quiet_undefined():
        for i, idx in enumerate(draws):
            ra, rb = metric(a.iloc[idx]), metric(b.iloc[idx])
            if ra.ok and rb.ok:
                diffs[i] = ra.value - rb.value
    return diffs


def bootstrap_pooled_difference(
    pred_a: pd.DataFrame,
    pred_b: pd.DataFrame,
    metric: PooledMetric,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    id_col: str = "patient_id",
) -> BootstrapDifference:
    """Percentile bootstrap CI of ``metric(A) - metric(B)`` over the pooled out-of-fold predictions.

    Patients are resampled with replacement and the SAME resample is applied to both models
    (rows matched by ``id_col``), so the CI reflects the paired difference on one cohort.
    Raises when the two frames do not hold exactly the same patients (each once). Seeded:
    same inputs and seed, same CI. Replicates in which either metric is undefined (e.g. a
    resample with no events) are skipped and counted; ``n_valid`` says how many remain.

    Pooling caveat: risks from different folds' models are pooled on one scale; fine for
    ranking metrics when the models' outputs are comparable across folds (the discrete-time
    risk -sum S is), questionable for uncalibrated Cox linear predictors.
    """
    if n_boot < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"need n_boot >= 1 and 0 < level < 1, got {n_boot}, {level}")
    for name, frame in (("A", pred_a), ("B", pred_b)):
        if id_col not in frame.columns:
            raise ValueError(f"predictions {name} lack the {id_col!r} column")
        if frame[id_col].duplicated().any():
            dups = frame[id_col][frame[id_col].duplicated()].tolist()[:5]
            raise ValueError(f"predictions {name} hold patients more than once, e.g. {dups}")
    ids_a, ids_b = set(pred_a[id_col]), set(pred_b[id_col])
    if ids_a != ids_b:
        raise ValueError(
            f"models were not evaluated on the same patients: {len(ids_a - ids_b)} only in A "
            f"(e.g. {sorted(ids_a - ids_b, key=str)[:3]}), {len(ids_b - ids_a)} only in B "
            f"(e.g. {sorted(ids_b - ids_a, key=str)[:3]})"
        )
    a = pred_a.reset_index(drop=True)
    b = pred_b.set_index(id_col).loc[a[id_col]].reset_index()
    value_a, value_b = metric(a), metric(b)
    nan = math.nan
    if not (value_a.ok and value_b.ok):
        why = f"pooled metric undefined: A {value_a.reason or 'ok'}, B {value_b.reason or 'ok'}"
        return BootstrapDifference(
            value_a, value_b, undefined("pooled difference", why), nan, nan, level, n_boot, 0, seed
        )
    diffs = _replicate_differences(a, b, metric, n_boot, seed)
    valid = diffs[~np.isnan(diffs)]
    if valid.size < n_boot:
        logger.warning("bootstrap: %d of %d replicates undefined and skipped", n_boot - valid.size, n_boot)
    difference = MetricResult(value_a.value - value_b.value)
    if valid.size < 2:
        return BootstrapDifference(
            value_a, value_b, difference, nan, nan, level, n_boot, int(valid.size), seed
        )
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(valid, [alpha, 1.0 - alpha])
    return BootstrapDifference(
        value_a, value_b, difference, float(low), float(high), level, n_boot, int(valid.size), seed
    )
