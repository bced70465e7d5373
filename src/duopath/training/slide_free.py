"""The bag store of a model that reads no slide (SNN): every patient, zero tiles.

Why a store and not a second trainer: the fold protocol (roles, training-only bins and scaler,
selection on validation, one test prediction) is the same for every model, so the RNA-only SNN
goes through the same loop as the others. It only must not *read* -- or, in the DAG, wait for --
any slide's features: an RNA-only cohort has none, and in a mixed cohort a patient without a
usable slide is still an RNA patient. This store answers the :class:`~duopath.training.data.BagStore`
questions without opening a file: each patient's bag holds zero tiles per magnification.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from duopath.training.data import MagBag, PatientBag

#: Width of the (empty) tile-feature rows. No model that uses this store reads them; the
#: models' constructors only require a positive width.
EMPTY_FEATURE_DIM = 1


class SlideFreeStore:
    """A bag store for models without histology input (see module docstring)."""

    encoder = "none"
    weights_id = None
    feature_dim = EMPTY_FEATURE_DIM
    features_dir = None
    reads = 0

    def __init__(self, patients: Iterable[str], magnifications: Sequence[str]) -> None:
        self.magnifications = tuple(magnifications)
        self.slides: dict[str, tuple] = {str(p): () for p in patients}
        self.excluded: dict[str, str] = {}
        empty = MagBag(np.zeros((0, EMPTY_FEATURE_DIM), np.float32), np.zeros((0, 2), np.float32),
                       np.zeros(0, np.int64), np.zeros(0, np.int64))
        self._mags = {m: empty for m in self.magnifications}

    @property
    def patients(self) -> list[str]:
        return sorted(self.slides)

    def get(self, patient_id: str) -> PatientBag:
        """The patient's empty bag (every magnification with zero tiles)."""
        return PatientBag(str(patient_id), (), dict(self._mags))
