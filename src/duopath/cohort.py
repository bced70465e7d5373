"""Sample sheets: read a user's CSV/TSV (or the demo plan) into one canonical, validated table.

Why one canonical table: every later stage joins slides, RNA and outcomes *by ID*, never by
row position, and every rule reads the same columns. Problems are collected for the whole
sheet and reported together with file, line and column, before any slide is opened.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from duopath.config import CohortConfig

SHEET_COLUMNS = [
    "patient_id",
    "slide_id",
    "slide_path",
    "rna_sample_id",
    "site",
    "label",
    "time",
    "event",
    "mpp",
]

TEXT_COLUMNS = ("patient_id", "slide_id", "slide_path", "rna_sample_id", "site", "label")
"""Canonical columns read as text ("" = unknown); the others (time, event, mpp) are numbers."""

# TCGA-<TSS>-<participant>-<sample type><vial>-... e.g. TCGA-A2-A0CM-01Z-00-DX1.<uuid>
_TCGA = re.compile(r"^(TCGA-([A-Z0-9]{2})-[A-Z0-9]{4})(?:-(\d{2})[A-Z]?)?", re.IGNORECASE)
_SLIDE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Cells that mean "not known" in clinical tables (pandas' NA strings, TCGA's bracketed codes,
# GDC's "'--"). A label like this is missing, never a class: read with keep_default_na=False
# (so an ID "NA" stays an ID), "NaN" would otherwise become a third class next to high/low.
MISSING_VALUES = frozenset({
    "", "na", "n/a", "nan", "-nan", "none", "null", "<na>", "#n/a", "#na", "#n/a n/a", "nat",
    "-", "--", "'--", "?", "[not available]", "[unknown]", "[not evaluated]", "[not applicable]",
    "[discrepancy]", "[completed]",
})
_TRUE_EVENT = {"1", "1.0", "true", "dead", "deceased", "event"}
_FALSE_EVENT = {"0", "0.0", "false", "alive", "living", "censored"}


class SampleSheetError(ValueError):
    """A sample sheet problem; the message lists every bad row/column with a hint."""


@dataclass(frozen=True)
class TcgaBarcode:
    patient_id: str
    site: str
    sample_type: str | None


def parse_tcga_barcode(text: str) -> TcgaBarcode | None:
    """Parse patient (``TCGA-XX-YYYY``), tissue-source site (``XX``) and sample type (``01``)."""
    m = _TCGA.match(str(text).strip())
    if not m:
        return None
    return TcgaBarcode(patient_id=m.group(1).upper(), site=m.group(2).upper(), sample_type=m.group(3))


def read_table(path: Path) -> pd.DataFrame:
    sep = "\t" if path.suffix.lower() in {".tsv", ".txt", ".tab"} else ","
    try:
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, comment=None)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        kind = "TSV" if sep == "\t" else "CSV"
        raise SampleSheetError(f"{path}: cannot parse as {kind}: {err}") from None


def canonicalise_sheet(
    raw: pd.DataFrame,
    cohort: CohortConfig,
    *,
    source: str,
    slide_dir: Path | None,
    check_files: bool = True,
) -> pd.DataFrame:
    """Map a user's columns to :data:`SHEET_COLUMNS` and validate every row.

    ``raw`` holds strings as read from the file. Relative ``slide_path`` values are resolved
    against ``slide_dir`` (or the sheet's directory). Missing ``patient_id``/``site`` columns
    are derived from TCGA barcodes in ``slide_id``. Raises :class:`SampleSheetError` listing
    all problems.
    """
    df = raw.copy()
    df.columns = [str(c).strip() for c in df.columns]
    problems: list[str] = []

    def row_ref(i: int) -> str:
        return f"{source}, line {i + 2}"  # +1 header, +1 one-based

    rename = {}
    if cohort.label_column and cohort.label_column in df.columns:
        rename[cohort.label_column] = "label"
    for src_col, dst in ((cohort.time_column, "time"), (cohort.event_column, "event"),
                         (cohort.site_column, "site")):
        if src_col in df.columns:
            rename[src_col] = dst
    df = df.rename(columns=rename)

    has_slide_columns = "slide_id" in df.columns or "slide_path" in df.columns
    if not has_slide_columns and "rna_sample_id" not in df.columns:
        raise SampleSheetError(
            f"{source}: needs a `slide_id` or `slide_path` column (slides), an `rna_sample_id` "
            f"column (RNA), or both (found: {', '.join(df.columns)})"
        )
    if not has_slide_columns:
        df["slide_id"] = ""  # an RNA-only cohort: no row has a slide
    if "slide_path" not in df.columns:
        df["slide_path"] = df["slide_id"]
    if "slide_id" not in df.columns:
        df["slide_id"] = [Path(p).stem if str(p).strip() else "" for p in df["slide_path"]]
    for col in ("patient_id", "site", "rna_sample_id", "label", "time", "event", "mpp"):
        if col not in df.columns:
            df[col] = ""

    survival = "survival" in cohort.tasks
    classification = "classification" in cohort.tasks
    required = (["time", "event"] if survival else []) + (["label"] if classification else [])
    for col in required:
        if (df[col] == "").all():
            wanted = {"time": cohort.time_column, "event": cohort.event_column,
                      "label": cohort.label_column}[col]
            raise SampleSheetError(
                f"{source}: tasks {cohort.tasks} need column {wanted!r} "
                f"(set cohorts.<name>.{col}_column in config.yaml)"
            )

    base = slide_dir if slide_dir is not None else Path(source).parent
    out_rows, lines = [], []
    for i, row in enumerate(df.to_dict("records")):
        ref = row_ref(i)
        slide_id = str(row["slide_id"]).strip()
        path_text = str(row["slide_path"]).strip()
        rna_id = str(row["rna_sample_id"]).strip()
        if not slide_id and not path_text:
            # A patient with RNA only (mixed or RNA-only cohorts): RNA models use it, slide
            # models leave it out (duopath.modalities says which and why).
            if not rna_id:
                problems.append(f"{ref}: the row has neither a slide (slide_id / slide_path) nor "
                                "an rna_sample_id; give one or remove the row")
                continue
        elif not slide_id or not _SLIDE_ID.match(slide_id):
            problems.append(f"{ref}, column slide_id: {slide_id!r} is empty or has characters "
                            "other than letters, digits, '.', '_', '-'")
            continue
        elif not path_text:
            problems.append(f"{ref}, column slide_path: empty for slide {slide_id!r} (leave "
                            "slide_id empty too for a patient without a slide)")
            continue
        bc = parse_tcga_barcode(slide_id) or parse_tcga_barcode(rna_id)
        patient = str(row["patient_id"]).strip() or (bc.patient_id if bc else "")
        if not patient:
            named = slide_id or rna_id
            problems.append(f"{ref}, column patient_id: empty and {named!r} is not a TCGA barcode")
        site = str(row["site"]).strip() or (bc.site if bc else "")
        slide_path: Path | str = ""
        if slide_id:
            slide_path = Path(path_text)
            if not slide_path.is_absolute():
                slide_path = base / slide_path
            if check_files and not slide_path.exists():
                problems.append(f"{ref}, column slide_path: {slide_path} does not exist")
        time = _to_float(row["time"])
        event = _to_event(row["event"])
        if survival:
            if time is None or not np.isfinite(time) or time < 0:
                problems.append(f"{ref}, column {cohort.time_column}: {row['time']!r} is not a "
                                "non-negative number")
            if event is None:
                problems.append(f"{ref}, column {cohort.event_column}: {row['event']!r} is not an "
                                "event flag (1/0, true/false, dead/alive; 1 = event observed)")
        label = str(row["label"]).strip()
        if is_missing(label):
            if classification:
                problems.append(f"{ref}, column {cohort.label_column}: missing label ({label!r}); "
                                "a missing label is not a class: fill it in or remove the row")
            label = ""
        mpp = _to_float(row["mpp"])
        if str(row["mpp"]).strip() and (mpp is None or not 0.05 <= mpp <= 20):
            problems.append(f"{ref}, column mpp: {row['mpp']!r} is not a µm/px value in [0.05, 20]")
        out_rows.append({
            "patient_id": patient,
            "slide_id": slide_id,
            "slide_path": str(slide_path),
            "rna_sample_id": rna_id,
            "site": site,
            "label": label,
            "time": time,
            "event": event,
            "mpp": mpp,
        })
        lines.append(i + 2)

    out = pd.DataFrame(out_rows, columns=SHEET_COLUMNS)
    problems += _repeated_slides(out, lines, source)
    problems += _patient_disagreements(out, lines, source, cohort)
    if problems:
        shown = problems[:50]
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise SampleSheetError(f"invalid sample sheet {source}:\n  - " + "\n  - ".join(shown) + more)
    out["event"] = out["event"].astype("Int64")
    return out


def read_sample_sheet(cohort: CohortConfig, *, check_files: bool = True) -> pd.DataFrame:
    """Read and validate a user cohort's sample sheet into :data:`SHEET_COLUMNS`."""
    if cohort.sample_sheet is None:
        raise SampleSheetError("this cohort has no sample_sheet (demo cohorts use plan_demo)")
    path = Path(cohort.sample_sheet)
    raw = read_table(path)
    return canonicalise_sheet(raw, cohort, source=str(path), slide_dir=cohort.slide_dir,
                              check_files=check_files)


def is_missing(text: object) -> bool:
    """True for a cell that means "not known" (:data:`MISSING_VALUES`, any case)."""
    return str(text).strip().lower() in MISSING_VALUES


def _repeated_slides(out: pd.DataFrame, lines: list[int], source: str) -> list[str]:
    """A slide_id or a slide file listed twice, naming the lines.

    Why the file too: the same file under two slide_ids is embedded twice and pooled twice
    into its patient's bag (or, under two patients, leaks one patient's tissue into another).
    """
    problems = []
    with_slide = out[out["slide_id"] != ""]
    for col, what in (("slide_id", "slide_id"), ("slide_path", "slide file")):
        keys = (with_slide[col] if col == "slide_id"
                else with_slide[col].map(lambda p: str(Path(p).resolve())))
        for key, idx in keys.groupby(keys, sort=True).groups.items():
            if len(idx) < 2:
                continue
            where = ", ".join(f"line {lines[i]} (slide_id {out.at[i, 'slide_id']}, patient "
                              f"{out.at[i, 'patient_id']})" for i in idx)
            problems.append(f"{source}: {what} {key} is listed {len(idx)} times: {where}; "
                            "each slide must appear once")
    return problems


def _patient_disagreements(out: pd.DataFrame, lines: list[int], source: str,
                           cohort: CohortConfig) -> list[str]:
    """One patient's rows that disagree on an outcome (the splits would keep the first)."""
    cols = (["time", "event"] if "survival" in cohort.tasks else []) + (
        ["label"] if "classification" in cohort.tasks else [])
    problems = []
    for col in cols:
        values = out[col].astype(str)
        for pid, idx in out.groupby("patient_id", sort=True).groups.items():
            if pid and values[idx].nunique() > 1:
                where = ", ".join(f"line {lines[i]} ({values[i]})" for i in idx)
                problems.append(f"{source}: patient {pid} has different {col} values: {where}; "
                                "an outcome belongs to the patient, give it once")
    return problems


def read_canonical_sheet(
    path: Path | str, *, required: tuple[str, ...] = ("slide_id",)
) -> pd.DataFrame:
    """The canonical sample sheet ``duopath sheet`` wrote (``layout.SHEET``), one row per slide.

    The one reader of that file for every later stage: :data:`TEXT_COLUMNS` as stripped text
    ("" = unknown, never NaN, so an empty label can never become the class "nan"), ``time``,
    ``event`` and ``mpp`` as numbers (NaN = unknown). Columns the file lacks are added empty,
    except ``patient_id`` (every row needs one: everything downstream joins by it) and the
    ``required`` ones, which a stage names when it reads others than the slides (the RNA build
    needs ``rna_sample_id``, not ``slide_id``): their absence means a raw sheet was passed.
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise SampleSheetError(f"{path}: cannot read the sample sheet: {err}") from None
    missing = [c for c in dict.fromkeys(("patient_id", *required)) if c not in df.columns]
    if missing:
        raise SampleSheetError(f"{path}: sample sheet lacks column(s) {missing}; pass the canonical "
                               "sheet (cohorts/{cohort}/samples.csv), not the raw one")
    for col in SHEET_COLUMNS:
        if col not in df.columns:
            df[col] = ""
    for col in TEXT_COLUMNS:
        df[col] = df[col].astype(str).str.strip()
    empty = np.flatnonzero(df["patient_id"].to_numpy() == "")
    if len(empty):
        raise SampleSheetError(f"{path}, line {int(empty[0]) + 2}: empty patient_id; pass the "
                               "canonical sheet (cohorts/{cohort}/samples.csv), not the raw one")
    for col in ("time", "event", "mpp"):
        text = df[col].astype(str).str.strip()
        df[col] = pd.to_numeric(text.where(text != ""), errors="coerce")
    return df


def _to_float(value: object) -> float | None:
    text = str(value).strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _to_event(value: object) -> int | None:
    text = str(value).strip().lower()
    if text in _TRUE_EVENT:
        return 1
    if text in _FALSE_EVENT:
        return 0
    return None
