"""Evaluation of held-out predictions: survival and classification metrics, risk groups,
aggregation over folds and paired model comparisons.

Pure numpy/pandas over ``predictions.parquet`` frames (no torch), so the report and users'
own analyses can recompute every number. Conventions used throughout:

* ``risk``: higher = worse prognosis; ``event``: 1 = event observed, 0 = censored.
* Everything fold-specific that is *chosen* (Uno's tau = 75th percentile of the training
  follow-up times, the time grid's window, the risk-group threshold = median training risk,
  the discrete-time bin edges) comes from the TRAINING patients of the fold; the test fold
  only supplies what is scored.
* A metric that cannot be computed on a fold is ``MetricResult(nan, reason)`` and logs a
  warning; it is never 0 and never a silent gap. Invalid inputs raise ``ValueError``.

Modules: ``result`` (MetricResult), ``curves`` (S(t) from hazards), ``survival``,
``classification``, ``risk_groups``, ``compare`` (long table, mean ± std, paired tests,
bootstrap), ``metrics`` (one fold from a predictions frame).
"""

from duopath.evaluation.classification import CLASSIFICATION_METRICS, classification_metrics
from duopath.evaluation.compare import (
    LONG_COLUMNS,
    BootstrapDifference,
    PairedTest,
    bootstrap_pooled_difference,
    compare_models,
    format_mean_std,
    long_table,
    paired_fold_test,
    summarize_folds,
)
from duopath.evaluation.curves import SurvivalCurve, survival_curve_from_hazards
from duopath.evaluation.metrics import (
    SURVIVAL_METRICS,
    evaluate_classification_predictions,
    evaluate_survival_predictions,
    pooled_classification_metric,
    pooled_harrell_c,
    survival_fold_metrics,
)
from duopath.evaluation.result import MetricResult
from duopath.evaluation.risk_groups import KaplanMeier, RiskGroups, kaplan_meier, risk_groups
from duopath.evaluation.survival import (
    TimeDependentAUC,
    TimeGrid,
    harrell_c,
    integrated_brier_score,
    time_dependent_auc,
    time_grid,
    uno_c,
    uno_tau,
)

__all__ = [
    "CLASSIFICATION_METRICS",
    "LONG_COLUMNS",
    "SURVIVAL_METRICS",
    "BootstrapDifference",
    "KaplanMeier",
    "MetricResult",
    "PairedTest",
    "RiskGroups",
    "SurvivalCurve",
    "TimeDependentAUC",
    "TimeGrid",
    "bootstrap_pooled_difference",
    "classification_metrics",
    "compare_models",
    "evaluate_classification_predictions",
    "evaluate_survival_predictions",
    "format_mean_std",
    "harrell_c",
    "integrated_brier_score",
    "kaplan_meier",
    "long_table",
    "paired_fold_test",
    "pooled_classification_metric",
    "pooled_harrell_c",
    "risk_groups",
    "summarize_folds",
    "survival_curve_from_hazards",
    "survival_fold_metrics",
    "time_dependent_auc",
    "time_grid",
    "uno_c",
    "uno_tau",
]
