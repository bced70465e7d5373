"""Sample ↔ patient join: by ID from the sample sheet, never by row position.

Rules (documented in config too):

- **Mode.** ``sample``: an RNA sample belongs to the patient whose sheet rows name it in
  ``rna_sample_id``; a patient whose rows leave it empty has no RNA. ``patient``: an RNA sample
  belongs to the patient named by its GDC ``Case ID`` (or an obs ``patient_id``), else by its
  TCGA barcode's patient part, else by its own ID. ``auto``: ``sample`` if any row of the
  sheet has an ``rna_sample_id``, else ``patient``.
- **ID match** (sample mode): exact, or through an alias (GDC File ID / File Name), or, for
  TCGA barcodes of the same patient, one being a prefix of the other (the sheet says
  ``TCGA-A2-A0CM-01A``, the matrix ``TCGA-A2-A0CM-01A-11R-A034-07``, or the sheet names only
  the patient ``TCGA-A2-A0CM``).
- **One sample per patient.** Candidates are ranked by TCGA sample-type code in the order of
  ``rna.sample_type_preference`` (default: primary tumour ``01`` first, normal ``11`` last;
  unknown codes after every listed one), then by sample ID (so vial ``A`` beats ``B``). The
  rest are reported as dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd

from duopath.cohort import parse_tcga_barcode
from duopath.rna import RnaError

log = logging.getLogger(__name__)


@dataclass
class JoinResult:
    """Chosen sample per patient, and everything that did not make it (for the summary)."""

    chosen: dict[str, str]  # patient_id -> RNA sample ID
    mode: str
    patients_without_rna: list[str]
    unmatched_samples: list[str]
    dropped: dict[str, list[str]] = field(default_factory=dict)  # patient -> other samples
    not_found: list[str] = field(default_factory=list)  # sheet rna_sample_ids absent from input


def patient_table(sheet: pd.DataFrame) -> pd.DataFrame:
    """One row per patient from the per-slide canonical sheet.

    The sheet has one row per slide; site, label, time and event are patient-level facts, so a
    disagreement between a patient's slides is logged and the row of the smallest slide_id
    wins (by ID, so the sheet's row order never changes the result).
    """
    cols = ["site", "label", "time", "event"]
    if "slide_id" in sheet.columns:
        sheet = sheet.sort_values(["patient_id", "slide_id"], kind="mergesort")
    for pid, rows in sheet.groupby("patient_id", sort=True):
        for col in cols:
            distinct = rows[col].dropna().astype(str).unique()
            if len(distinct) > 1:
                log.warning("patient %s: slides disagree on %s (%s); using the first slide's",
                            pid, col, ", ".join(distinct))
    first = sheet.groupby("patient_id", sort=True).first()
    return first[cols]


def join_samples(
    sheet: pd.DataFrame,
    sample_meta: pd.DataFrame,
    *,
    mode: str,
    preference: list[str],
    source: str,
) -> JoinResult:
    """Match RNA samples (``sample_meta``, indexed by sample ID) to the sheet's patients."""
    sheet_ids = sheet["rna_sample_id"].fillna("").astype(str).str.strip()
    if mode == "auto":
        mode = "sample" if (sheet_ids != "").any() else "patient"
    patients = sorted(sheet["patient_id"].astype(str).unique())
    candidates: dict[str, list[str]] = {p: [] for p in patients}
    owner: dict[str, str] = {}
    not_found: list[str] = []

    if mode == "sample":
        wanted = (
            pd.DataFrame({"patient": sheet["patient_id"].astype(str), "id": sheet_ids})
            .query("id != ''").drop_duplicates()
        )
        index = _IdIndex(sample_meta)
        for patient, sid in zip(wanted["patient"], wanted["id"], strict=True):
            hits = index.match(sid)
            if not hits:
                not_found.append(sid)
            for sample in hits:
                if owner.get(sample, patient) != patient:
                    raise RnaError(
                        f"RNA sample {sample} of {source} matches rna_sample_id of two patients "
                        f"({owner[sample]} and {patient}) in the sample sheet; make the IDs unique"
                    )
                owner[sample] = patient
                if sample not in candidates[patient]:
                    candidates[patient].append(sample)
    elif mode == "patient":
        pset = set(patients)
        for sample in sample_meta.index:
            patient = _patient_of(sample, sample_meta.loc[sample, "patient"])
            if patient in pset:
                owner[sample] = patient
                candidates[patient].append(sample)
    else:
        raise ValueError(f"unknown join mode {mode!r}")

    if not owner:
        raise RnaError(
            f"none of the {len(sample_meta)} RNA samples of {source} matches a patient of the "
            f"sample sheet (join by {mode}; RNA IDs e.g. {', '.join(map(str, sample_meta.index[:3]))}"
            f"; sheet {'rna_sample_id' if mode == 'sample' else 'patient_id'} e.g. "
            f"{', '.join((sheet_ids[sheet_ids != ''] if mode == 'sample' else pd.Series(patients))[:3])}"
            "). Are the sheet and the RNA from the same cohort, with the same ID scheme?"
        )
    rank = {code: i for i, code in enumerate(preference)}
    chosen, dropped = {}, {}
    for patient, samples in candidates.items():
        if not samples:
            continue
        ordered = sorted(samples, key=lambda s: (
            rank.get(str(sample_meta.loc[s, "sample_type"]), len(rank)), s))
        chosen[patient] = ordered[0]
        if len(ordered) > 1:
            dropped[patient] = ordered[1:]
    if dropped:
        log.info("%d patients have several RNA samples; kept by sample-type preference %s, e.g. "
                 "%s: kept %s, dropped %s", len(dropped), preference, next(iter(dropped)),
                 chosen[next(iter(dropped))], ", ".join(next(iter(dropped.values()))))
    unmatched = sorted(set(map(str, sample_meta.index)) - set(owner))
    if unmatched:
        log.warning("%d RNA samples of %s match no patient of the sample sheet and are left "
                    "out, e.g. %s", len(unmatched), source, ", ".join(unmatched[:5]))
    if not_found:
        log.warning("%d rna_sample_id values of the sample sheet are not in %s; their patients "
                    "count as without RNA, e.g. %s", len(not_found), source,
                    ", ".join(not_found[:5]))
    without = [p for p in patients if p not in chosen]
    if without:
        log.info("%d of %d patients have no RNA sample (kept for slide-only models): %s",
                 len(without), len(patients), ", ".join(without[:10]))
    return JoinResult(chosen=chosen, mode=mode, patients_without_rna=without,
                      unmatched_samples=unmatched, dropped=dropped, not_found=sorted(not_found))


def _patient_of(sample: str, declared: object) -> str:
    text = "" if declared is None or pd.isna(declared) else str(declared).strip()
    if text:
        return text
    bc = parse_tcga_barcode(sample)
    return bc.patient_id if bc else str(sample)


class _IdIndex:
    """Find RNA samples by sheet ID: exact, alias, or TCGA barcode prefix of one patient."""

    def __init__(self, sample_meta: pd.DataFrame) -> None:
        self.exact: dict[str, list[str]] = {}
        self.by_patient: dict[str, list[str]] = {}
        for sample, aliases in zip(sample_meta.index.astype(str),
                                   sample_meta["aliases"].fillna("").astype(str), strict=True):
            for key in {sample, *[a for a in aliases.split(";") if a]}:
                self.exact.setdefault(key, []).append(sample)
            bc = parse_tcga_barcode(sample)
            if bc:
                self.by_patient.setdefault(bc.patient_id, []).append(sample)

    def match(self, sheet_id: str) -> list[str]:
        if sheet_id in self.exact:
            return sorted(set(self.exact[sheet_id]))
        bc = parse_tcga_barcode(sheet_id)
        if bc is None:
            return []
        want = sheet_id.upper()
        hits = []
        for sample in self.by_patient.get(bc.patient_id, []):
            have = sample.upper()
            if have.startswith(want) or want.startswith(have):
                hits.append(sample)
        return sorted(hits)
