"""Penalised Cox baseline (scikit-survival's ``CoxnetSurvivalAnalysis``) on the RNA features.

Why: on RNA alone, an elastic-net Cox model is what a researcher compares any neural survival
model with first; if the SNN does not beat it, the RNA encoders add nothing. It reads exactly the
SNN's inputs: the fold's gene groups (T ∪ E, each gene once), z-scored with the scaler fit on the
fold's TRAINING patients (``duopath.rna.normalise``), so the two differ in the model alone.

Protocol (the same leakage rules as every other model):

* the penalty path and its coefficients are fit on the TRAINING patients only;
* the penalty strength ``alpha`` is chosen by an inner cross-validation *within* the training
  patients (mean Harrell's C over ``inner_folds`` stratified folds; ties go to the larger, more
  penalised alpha), so a validation split of a handful of events does not pick it and the
  inner VALIDATION patients stay untouched, as for the other models' calibration;
* the test patients are predicted once, at the end.

Outputs: the linear predictor as ``risk`` (higher = worse) and the Breslow survival function of
the refit model, so the fold is scored with the same C-index / IBS code as every other model.
This module fits and predicts; writing fold outputs and the DAG rule are the training side's.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

log = logging.getLogger(__name__)

#: Elastic-net mixing: half lasso, half ridge (correlated genes share weight instead of one
#: being picked arbitrarily). scikit-survival's default.
L1_RATIO = 0.5
N_ALPHAS = 30
INNER_FOLDS = 5
#: The path stops at this fraction of the largest alpha: below it the 76-gene fits barely change
#: and the solver slows down on small cohorts.
ALPHA_MIN_RATIO = 0.01


@dataclass
class CoxnetFit:
    """A fitted penalised Cox model and how its alpha was chosen."""

    model: object  # sksurv CoxnetSurvivalAnalysis, refit at the chosen alpha with a baseline
    alpha: float
    l1_ratio: float
    alphas: np.ndarray
    inner_c: np.ndarray  # mean inner-CV Harrell's C per alpha (NaN where undefined)
    n_nonzero: int
    genes: list[str] = field(default_factory=list)
    selection: str = "inner_cv"  # or "fallback_first_nonzero" (inner CV undefined everywhere)

    @property
    def coef(self) -> np.ndarray:
        """Coefficients at the chosen alpha (the last of the refit path), one per gene."""
        return np.asarray(self.model.coef_[:, -1], dtype=float)

    def risk(self, x: ArrayLike) -> np.ndarray:
        """Linear predictor (higher = worse prognosis)."""
        return np.asarray(self.model.predict(np.asarray(x, dtype=float)), dtype=float)

    def survival(self, x: ArrayLike, times: ArrayLike) -> np.ndarray:
        """S_i(t) [n, len(times)] from the Breslow baseline of the training fit.

        Beyond the last training event time the baseline is flat (sksurv would raise there).
        """
        t = np.asarray(times, dtype=float)
        fns = self.model.predict_survival_function(np.asarray(x, dtype=float))
        lo, hi = fns[0].domain
        return np.vstack([fn(np.clip(t, lo, hi)) for fn in fns])

    def summary(self) -> dict:
        return {"alpha": self.alpha, "l1_ratio": self.l1_ratio, "n_nonzero": self.n_nonzero,
                "n_genes": len(self.genes), "alpha_selection": self.selection}


def _structured(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    y = np.empty(time.shape[0], dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = event.astype(bool), time
    return y


def _path(x: np.ndarray, y: np.ndarray, alphas: np.ndarray | None, l1_ratio: float):
    from sksurv.linear_model import CoxnetSurvivalAnalysis

    model = CoxnetSurvivalAnalysis(l1_ratio=l1_ratio, alphas=alphas, n_alphas=N_ALPHAS,
                                   alpha_min_ratio=ALPHA_MIN_RATIO, max_iter=100_000)
    with warnings.catch_warnings():  # the smallest alphas may stop short of convergence
        warnings.filterwarnings("ignore", category=Warning, module="sksurv")
        model.fit(x, y)
    return model


def fit_coxnet(
    x: ArrayLike,
    time: ArrayLike,
    event: ArrayLike,
    *,
    genes: Sequence[str] = (),
    l1_ratio: float = L1_RATIO,
    inner_folds: int = INNER_FOLDS,
    seed: int = 0,
) -> CoxnetFit:
    """Fit on TRAINING patients only: alpha by inner CV within them, then a refit with a baseline.

    ``x``: patients × genes, already scaled with the training scaler. ``event``: 1 = event.
    """
    from sklearn.model_selection import StratifiedKFold
    from sksurv.linear_model import CoxnetSurvivalAnalysis
    from sksurv.metrics import concordance_index_censored

    x = np.asarray(x, dtype=float)
    t = np.asarray(time, dtype=float)
    e = np.asarray(event).astype(bool)
    if x.ndim != 2 or x.shape[0] != t.shape[0] or t.shape != e.shape:
        raise ValueError(f"x {x.shape}, time {t.shape} and event {e.shape} disagree")
    if int(e.sum()) < inner_folds:
        raise ValueError(f"CoxNet needs >= {inner_folds} training events for its inner CV, "
                         f"got {int(e.sum())}")
    y = _structured(t, e)
    alphas = _path(x, y, None, l1_ratio).alphas_
    scores = np.full((inner_folds, alphas.size), np.nan)
    cv = StratifiedKFold(n_splits=inner_folds, shuffle=True, random_state=seed)
    for i, (fit_idx, held_idx) in enumerate(cv.split(x, e)):
        path = _path(x[fit_idx], y[fit_idx], alphas, l1_ratio)
        if not e[held_idx].any():
            continue
        for j in range(path.alphas_.size):
            risk = x[held_idx] @ path.coef_[:, j]
            if np.ptp(risk) == 0:
                continue  # an all-zero model ranks no one: C undefined, not 0.5
            try:
                scores[i, j] = concordance_index_censored(e[held_idx], t[held_idx], risk)[0]
            except ValueError:  # no comparable pair in this small held-out part: C undefined
                continue
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (too-strong alphas)
        mean_c = np.nanmean(scores, axis=0)
    selection = "inner_cv"
    if np.isnan(mean_c).all():
        # Tiny training sets (a handful of patients per inner part) leave C undefined at every
        # alpha. Rather than fail the fold, take the strongest penalty that keeps a gene (the
        # first alpha of the descending path with a non-zero coefficient) and say so.
        full = _path(x, y, alphas, l1_ratio)
        nonzero = np.flatnonzero(np.any(full.coef_ != 0, axis=0))
        if not nonzero.size:
            raise ValueError("CoxNet: no alpha gave a defined inner-CV C-index and every alpha "
                             "leaves all coefficients at zero (no signal at all?)")
        pick, best, selection = int(nonzero[0]), float("nan"), "fallback_first_nonzero"
        log.warning("CoxNet: inner-CV C undefined at every alpha (%d training patients, %d events): "
                    "using the strongest penalty that keeps a gene", x.shape[0], int(e.sum()))
    else:
        best = float(np.nanmax(mean_c))
        pick = int(np.flatnonzero(mean_c >= best - 1e-12)[0])  # alphas descend: first = strongest
    alpha = float(alphas[pick])
    # Refit along the path down to the chosen alpha (the last one, which predict and the survival
    # function use): coordinate descent warm-started from the stronger penalties. Fitting the one
    # small alpha from zero can overflow ("weights are too large"; seen on a GSE7390 fold).
    model = CoxnetSurvivalAnalysis(l1_ratio=l1_ratio, alphas=alphas[: pick + 1], fit_baseline_model=True,
                                   max_iter=100_000)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=Warning, module="sksurv")
        model.fit(x, y)
    n_nonzero = int(np.count_nonzero(model.coef_[:, -1]))
    log.info("CoxNet: alpha %.4g (inner-CV C %.3f, %d of %d genes non-zero)", alpha, best,
             n_nonzero, x.shape[1])
    return CoxnetFit(model, alpha, l1_ratio, alphas, mean_c, n_nonzero, list(genes), selection)


def rna_features(adata, train: Sequence[str], held_out: Sequence[str],
                 patients: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The SNN's RNA inputs for ``patients``: genes T ∪ E (each once), scaled on ``train`` only."""
    from duopath.rna.normalise import apply_scaler, fit_scaler

    groups = []
    for col in ("group_T", "group_E"):
        if col not in adata.var.columns:
            raise ValueError(f"the RNA AnnData has no var[{col!r}] (built by `duopath rna`?)")
        groups += [str(g) for g in adata.var_names[adata.var[col].astype(bool).to_numpy()]]
    genes = list(dict.fromkeys(groups))
    if not genes:
        raise ValueError("the RNA AnnData's gene groups are empty")
    mean, std = fit_scaler(adata, list(train), genes=genes, held_out=list(held_out))
    return genes, apply_scaler(adata, mean, std, patients=list(patients))
