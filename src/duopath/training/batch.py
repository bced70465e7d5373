# ruff: noqa: N815 - genes_T / genes_E: T and E are the paper's subspace names
"""Samples and padded batches: what a model's forward receives for several patients at once.

A :class:`Sample` holds a patient's genes and target but not its tiles (those come from the
``BagStore`` when a batch is built, and are subsampled there in training), so a fold's sample
lists cost no feature memory. :func:`collate` pads bags to the longest per magnification.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from duopath.training.data import PatientBag


@dataclass(frozen=True)
class Sample:
    """One patient's model inputs other than tiles: genes and the training target.

    The bag is not held here: it comes from the :class:`BagStore` when a batch is built (and
    is subsampled there in training), so a sample list costs no feature memory.
    ``target`` is the class index or the survival time bin; ``time``/``event`` are NaN when
    the sheet has none (classification cohorts); ``label`` is the sheet's label text.
    ``has_rna`` False: the patient has no measured RNA (its gene vectors are NaN, or the training
    mean under ``teacher.missing_rna: mean``); a student takes only the task loss from it, since
    its teacher has nothing real to distil (``objectives.student_step``).
    """

    patient_id: str
    genes_T: np.ndarray
    genes_E: np.ndarray
    target: int
    event: float
    time: float
    label: str = ""
    has_rna: bool = True


@dataclass
class Batch:
    """Padded tensors of several patients (``duopath.models.contract`` shapes).

    ``parent[m]`` [B, N_m] indexes the coarser magnification's PADDED bag (each sample's real
    tiles come first, so no shift is needed); -1 on padding and at the coarsest magnification.
    ``has_rna`` [B] bool: which samples carry measured RNA (``Sample.has_rna``).
    """

    patient_ids: list[str]
    feats: dict[str, Tensor]
    mask: dict[str, Tensor]
    coords: dict[str, Tensor]
    parent: dict[str, Tensor]
    genes_T: Tensor
    genes_E: Tensor
    targets: Tensor
    events: Tensor
    times: Tensor
    has_rna: Tensor

    def to(self, device: torch.device | str) -> Batch:
        def mv(d: dict[str, Tensor]) -> dict[str, Tensor]:
            return {k: v.to(device) for k, v in d.items()}

        return Batch(self.patient_ids, mv(self.feats), mv(self.mask), mv(self.coords), mv(self.parent),
                     self.genes_T.to(device), self.genes_E.to(device), self.targets.to(device),
                     self.events.to(device), self.times.to(device), self.has_rna.to(device))

    def select(self, rows: Sequence[int]) -> Batch:
        """The batch of samples ``rows`` only, padding trimmed: equal to :func:`collate` of those
        samples' bags (real tiles come first, so trimming to the longest kept bag is exact).

        Why: a student's teacher targets are computed on the samples with RNA only, from the very
        tiles the student saw in this step.
        """
        if not rows:
            raise ValueError("select needs at least one row")
        idx = torch.as_tensor(list(rows), dtype=torch.long, device=self.targets.device)
        feats, mask, coords, parent = {}, {}, {}, {}
        for m in self.feats:
            keep = self.mask[m].index_select(0, idx)
            n = int(keep.sum(dim=1).max())
            mask[m] = keep[:, :n]
            feats[m] = self.feats[m].index_select(0, idx)[:, :n]
            coords[m] = self.coords[m].index_select(0, idx)[:, :n]
            parent[m] = self.parent[m].index_select(0, idx)[:, :n]
        return Batch([self.patient_ids[i] for i in rows], feats, mask, coords, parent,
                     self.genes_T.index_select(0, idx), self.genes_E.index_select(0, idx),
                     self.targets.index_select(0, idx), self.events.index_select(0, idx),
                     self.times.index_select(0, idx), self.has_rna.index_select(0, idx))


def collate(
    samples: Sequence[Sample], bags: Sequence[PatientBag], magnifications: Sequence[str]
) -> Batch:
    """Pad the samples' bags (same order) to the longest per magnification; mask = real tile."""
    if not samples or len(samples) != len(bags):
        raise ValueError("collate needs one bag per sample and at least one sample")
    for s, bag in zip(samples, bags, strict=True):
        if s.patient_id != bag.patient_id:
            raise ValueError(f"bag of {bag.patient_id} given for sample {s.patient_id}")
    b = len(samples)
    feats, mask, coords, parent = {}, {}, {}, {}
    for m in magnifications:
        mag_bags = [bag.mags[m] for bag in bags]
        n = max(len(x) for x in mag_bags)
        d = mag_bags[0].feats.shape[1]
        f = np.zeros((b, n, d), dtype=mag_bags[0].feats.dtype)
        c = np.zeros((b, n, 2), dtype=np.float32)
        p = np.full((b, n), -1, dtype=np.int64)
        k = np.zeros((b, n), dtype=bool)
        for i, x in enumerate(mag_bags):
            f[i, : len(x)] = x.feats
            c[i, : len(x)] = x.coords
            p[i, : len(x)] = x.parent
            k[i, : len(x)] = True
        feats[m], coords[m] = torch.from_numpy(f), torch.from_numpy(c)
        parent[m], mask[m] = torch.from_numpy(p), torch.from_numpy(k)
    return Batch(
        patient_ids=[s.patient_id for s in samples],
        feats=feats,
        mask=mask,
        coords=coords,
        parent=parent,
        genes_T=torch.from_numpy(np.stack([s.genes_T for s in samples])),
        genes_E=torch.from_numpy(np.stack([s.genes_E for s in samples])),
        targets=torch.tensor([s.target for s in samples], dtype=torch.long),
        events=torch.tensor([s.event for s in samples], dtype=torch.float32),
        times=torch.tensor([s.time for s in samples], dtype=torch.float32),
        has_rna=torch.tensor([s.has_rna for s in samples], dtype=torch.bool),
    )
