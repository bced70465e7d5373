"""Hidden factors, clinical outcome and the sample sheet of the demo cohort.

Everything here is pure numpy/pandas and cheap: Snakemake calls :func:`plan_demo` while it
parses the DAG (to learn the slide ids), so nothing in this module may read or write an image.

The generative story, per patient ``p`` (seeded, independent of every other config knob than
``n_patients``, ``n_sites``, ``max_slides_per_patient`` and ``seed``):

- tumour factor ``t ~ N(0, 1)`` and tumour-microenvironment (TME) factor ``e ~ N(0, 1)``;
- linear predictor ``lp = B_T·t + B_E·e`` (aggressive tumour is worse, immune infiltrate is
  better) and hazard risk ``risk = lp + N(0, RISK_NOISE)``;
- survival time from a Weibull proportional-hazards model with that risk, censored by an
  independent uniform follow-up, so a model that recovers ``lp`` reaches a C-index of about
  0.78 on average (not 1.0: the Weibull draw and censoring are irreducible noise);
- grade ``high``/``low`` by thresholding ``grade_score = t + GRADE_E_WEIGHT·e + GRADE_NOISE·z``
  at its cohort median, so the two classes are balanced for any cohort size. The grade is a
  *mixed, noisy* read-out on purpose: with ``GRADE_E_WEIGHT = -0.8`` and ``GRADE_NOISE = 1.0``
  the true probability ``label_probability = Φ((t + GRADE_E_WEIGHT·e - median) / GRADE_NOISE)``
  reaches an AUC of about 0.86 on a 24-patient test fold, a model that sees only the tumour
  factor about 0.78 and one that sees only the TME factor about 0.72 (simulated from the truth
  alone). Session 3's ``t - 0.3·e + 0.4·z`` let the tumour share alone reach AUC ≈ 0.93 and
  saturated every model at 0.94-1.00, so no comparison could be read;
- tissue: the share of tumour-like tissue on each slide is ``TUMOUR_SHARE(t)`` (plus a little
  slide-to-slide jitter) and the density of immune-like cells in stroma grows with ``e``.

The default cohort is sized for statistics rather than pixels (DemoConfig): many patients with
small slides (about 5 tiles at 10x and 20 at 20x each), so that site-disjoint test folds hold
~24 patients while the whole cohort still embeds in minutes on a CPU. A patient has a second
slide with probability ``EXTRA_SLIDE_P`` (per extra slide allowed), enough to exercise
multi-slide patients without paying for a second slide on most of them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtr

from duopath.cohort import SHEET_COLUMNS
from duopath.config import DemoConfig

DEMO_SHEET_COLUMNS: tuple[str, ...] = tuple(c for c in SHEET_COLUMNS if c != "mpp")
"""The demo's sheet: the canonical columns (``cohort.SHEET_COLUMNS``) but ``mpp`` (its slides
carry their pixel size in the header)."""

# Effect sizes of the planted outcome model (see module docstring for why these values).
B_T = 1.1
B_E = -0.8
RISK_NOISE = 0.3
WEIBULL_SHAPE = 1.3
MEDIAN_MONTHS = 36.0  # median survival at risk 0
FOLLOW_UP_MONTHS = (6.0, 120.0)  # uniform censoring window: ~35 % censored on average
GRADE_E_WEIGHT = -0.8  # the grade mixes tumour and (lack of) immune infiltrate: see docstring
GRADE_NOISE = 1.0  # label noise: the true probability's AUC is ~0.86, not ~0.95
EXTRA_SLIDE_P = 0.15  # chance of each extra slide per patient (max_slides_per_patient - 1 draws)

# Tissue appearance: tumour share in [0.12, 0.88], a logistic function of t.
SHARE_RANGE = (0.12, 0.88)
SHARE_SLOPE = 1.2
SHARE_JITTER = 0.04  # per-slide deviation from the patient's share (two slides differ)
IMMUNE_BASE_PER_MM2 = 600.0  # immune-like cells per mm² of stroma at e = 0
IMMUNE_SLOPE = 0.8  # log-density per unit of e

# Independent random streams, so adding e.g. a slide never reshuffles the patients.
STREAM_PATIENTS = 1
STREAM_RNA = 2
STREAM_SLIDES = 3


def stream(cfg: DemoConfig, kind: int, index: int = 0) -> np.random.Generator:
    """A generator for one purpose (and one item) derived from ``cfg.seed``."""
    return np.random.default_rng(np.random.SeedSequence([cfg.seed, kind, index]))


def tumour_share(t: np.ndarray | float) -> np.ndarray:
    """Target fraction of the tissue area that is tumour-like, monotone in the tumour factor."""
    lo, hi = SHARE_RANGE
    return lo + (hi - lo) / (1.0 + np.exp(-SHARE_SLOPE * np.asarray(t, dtype=float)))


def immune_density(e: np.ndarray | float) -> np.ndarray:
    """Immune-like cells per mm² of stroma: log-linear in the TME factor."""
    return IMMUNE_BASE_PER_MM2 * np.exp(IMMUNE_SLOPE * np.asarray(e, dtype=float))


def simulate_patients(cfg: DemoConfig) -> pd.DataFrame:
    """One row per patient: hidden factors, outcome, label, site, RNA id and slide count.

    This is the single source of truth that both the sample sheet and ``truth.csv`` derive
    from, so the two can never disagree.
    """
    n = cfg.n_patients
    rng = stream(cfg, STREAM_PATIENTS)
    t = rng.standard_normal(n)
    e = rng.standard_normal(n)

    # Balanced site assignment, then shuffled so site is not confounded with patient index.
    site_idx = rng.permutation(np.arange(n) % cfg.n_sites)
    sites = np.array([f"S{i + 1}" for i in site_idx])

    lp = B_T * t + B_E * e
    risk = lp + RISK_NOISE * rng.standard_normal(n)
    scale = MEDIAN_MONTHS / np.log(2.0) ** (1.0 / WEIBULL_SHAPE)
    u = rng.uniform(size=n)
    event_time = scale * (-np.log(u) / np.exp(risk)) ** (1.0 / WEIBULL_SHAPE)
    censor_time = rng.uniform(*FOLLOW_UP_MONTHS, size=n)
    event = (event_time <= censor_time).astype(int)
    time = np.maximum(np.minimum(event_time, censor_time), 0.5).round(2)

    grade_score = t + GRADE_E_WEIGHT * e + GRADE_NOISE * rng.standard_normal(n)
    threshold = np.median(grade_score)
    label = np.where(grade_score > threshold, "high", "low")
    # P(high | t, e): what a model that knew both factors exactly could say (the AUC ceiling).
    label_probability = ndtr((t + GRADE_E_WEIGHT * e - threshold) / GRADE_NOISE)

    extra = rng.binomial(cfg.max_slides_per_patient - 1, EXTRA_SLIDE_P, size=n)
    n_slides = 1 + extra

    patient_ids = [f"DEMO-{s}-{i + 1:04d}" for i, s in enumerate(sites)]
    rna_ids = np.array([f"{p}-R" for p in patient_ids], dtype=object)
    n_missing = 1 if n < 20 else 2
    rna_ids[rng.choice(n, size=n_missing, replace=False)] = ""

    return pd.DataFrame(
        {
            "patient_id": patient_ids,
            "site": sites,
            "tumour_factor": t,
            "tme_factor": e,
            "linear_predictor": lp,
            "risk": risk,
            "time": time,
            "event": event,
            "event_time": event_time,
            "censor_time": censor_time,
            "grade_score": grade_score,
            "label": label,
            "label_probability": label_probability,
            "tumour_share": tumour_share(t),
            "immune_per_mm2": immune_density(e),
            "rna_sample_id": rna_ids.astype(str),
            "n_slides": n_slides,
        }
    )


def slides_of(patients: pd.DataFrame) -> pd.DataFrame:
    """Expand patients to one row per slide (suffix ``-01``, ``-02``...), in a stable order."""
    rows = patients.loc[patients.index.repeat(patients["n_slides"])].copy()
    rows["slide_no"] = rows.groupby("patient_id").cumcount() + 1
    rows["slide_id"] = rows["patient_id"] + "-" + rows["slide_no"].map("{:02d}".format)
    rows["slide_path"] = "slides/" + rows["slide_id"] + ".tiff"
    return rows.reset_index(drop=True)


def plan_demo(cfg: DemoConfig) -> pd.DataFrame:
    """The demo sample sheet, without touching any file: one row per slide.

    Columns are exactly :data:`DEMO_SHEET_COLUMNS`. ``rna_sample_id`` is ``""`` for the
    patients deliberately left without RNA (pandas reads that back as NaN unless
    ``keep_default_na=False``). Deterministic in ``cfg`` and fast (a few milliseconds).
    """
    sheet = slides_of(simulate_patients(cfg))
    sheet["time"] = sheet["time"].astype(float)
    sheet["event"] = sheet["event"].astype(int)
    return sheet.loc[:, list(DEMO_SHEET_COLUMNS)].reset_index(drop=True)
