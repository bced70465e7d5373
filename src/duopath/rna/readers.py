"""Readers for the RNA inputs users actually have, into one in-memory form (:class:`RawRna`).

Three inputs (``cohorts.<name>.rna`` in config):

- **GDC STAR counts**: a folder as downloaded from the GDC portal (one
  ``*.rna_seq.augmented_star_gene_counts.tsv`` per sample, usually in ``<file uuid>/``
  subfolders) plus the portal's sample sheet (``gdc_sample_sheet*.tsv``: ``File Name``,
  ``Case ID``, ``Sample ID``, ``Sample Type``) in that folder. The path may also be the sample
  sheet itself (files are then searched under its folder). Which column is read follows
  ``rna.value_type``: ``unstranded`` (counts), ``tpm_unstranded``, ``fpkm_uq_unstranded``.
- **A matrix** (CSV, TSV, optionally gzipped, or parquet): first column the row IDs, either
  genes × samples (e.g. the demo's ``rna_counts.tsv``) or samples × genes. The orientation is
  detected from the labels (Ensembl IDs / known HGNC symbols vs the sample sheet's IDs) and
  logged, because a transposed matrix would otherwise be read as 20,000 "samples".
- **An AnnData ``.h5ad``** (obs = samples): ``layers["counts"]`` if present and counts are
  asked for, else ``X``.

All readers fail loudly on values the declared ``rna.value_type`` cannot hold (non-numeric,
missing; negative unless ``log`` / ``zscore``) and on duplicated sample IDs, naming the file and
the sample / gene.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from duopath.cohort import parse_tcga_barcode
from duopath.rna import RnaError
from duopath.rna.genes import is_ensembl

log = logging.getLogger(__name__)

STAR_SUFFIX = ".rna_seq.augmented_star_gene_counts.tsv"
STAR_COLUMNS = {"counts": "unstranded", "tpm": "tpm_unstranded", "fpkm": "fpkm_unstranded",
                "fpkm_uq": "fpkm_uq_unstranded"}
#: value types whose values may be negative (already log-transformed or standardised)
SIGNED_VALUE_TYPES = ("log", "zscore")
GDC_SHEET_COLUMNS = ("File Name", "Case ID", "Sample ID", "Sample Type")
#: GDC "Sample Type" text → TCGA sample-type code (for samples whose ID is not a barcode).
GDC_SAMPLE_TYPES = {
    "primary tumor": "01",
    "recurrent tumor": "02",
    "primary blood derived cancer - peripheral blood": "03",
    "recurrent blood derived cancer - bone marrow": "04",
    "additional - new primary": "05",
    "metastatic": "06",
    "additional metastatic": "07",
    "human tumor original cells": "08",
    "primary blood derived cancer - bone marrow": "09",
    "blood derived normal": "10",
    "solid tissue normal": "11",
    "buccal cell normal": "12",
    "bone marrow normal": "14",
}
_ID_COLS = {"gene_id", "ensembl_id", "ensembl", "ensembl_gene_id", "gene_ids"}
_NAME_COLS = {"gene_name", "gene_symbol", "symbol", "hgnc_symbol", "gene_symbols", "feature_name"}
_TYPE_COLS = {"gene_type", "gene_biotype", "biotype"}
_OTHER_ANNOT = {"description", "chromosome", "length", "chr", "start", "end", "strand"}


@dataclass
class RawRna:
    """One RNA input as read, before gene harmonisation and the patient join.

    ``values`` is samples × features (float64). ``features`` is positional (row ``j`` describes
    column ``j``) with ``label`` and, where known, ``gene_id``, ``gene_name``, ``gene_type``.
    ``sample_meta`` is indexed by sample ID with ``file`` (where the sample was read from),
    ``patient`` (GDC Case ID / obs column, "" if unknown), ``sample_type`` (two-digit TCGA
    code, "" if unknown) and ``aliases`` (other IDs of the sample, ";"-joined).
    """

    values: np.ndarray
    sample_ids: list[str]
    features: pd.DataFrame
    sample_meta: pd.DataFrame
    source: str
    fmt: str
    orientation: str


def read_rna(
    source: Path | str,
    *,
    value_type: str,
    sample_hints: Iterable[str] = (),
    gene_symbols: Iterable[str] = (),
) -> RawRna:
    """Read any supported input (dispatch on what ``source`` is).

    ``sample_hints`` (the sheet's sample and patient IDs) and ``gene_symbols`` (known HGNC
    symbols) only help to detect a matrix's orientation.
    """
    path = Path(source)
    if not path.exists():
        raise RnaError(f"RNA input {path} does not exist (cohorts.<name>.rna in config.yaml)")
    if path.is_dir():
        raw = read_gdc_folder(path, value_type=value_type)
    elif path.name.lower().endswith(".h5ad"):
        raw = read_h5ad(path, value_type=value_type, sample_hints=sample_hints,
                        gene_symbols=gene_symbols)
    elif _is_gdc_sample_sheet(path):
        raw = read_gdc_folder(path.parent, value_type=value_type, sample_sheet=path)
    elif path.name.endswith(STAR_SUFFIX) or _first_line(path).startswith("# gene-model"):
        raise RnaError(
            f"{path} is a single GDC STAR counts file; point cohorts.<name>.rna at the folder "
            "holding all of them and the GDC sample sheet (gdc_sample_sheet*.tsv)"
        )
    else:
        raw = read_matrix(path, value_type=value_type, sample_hints=sample_hints,
                          gene_symbols=gene_symbols)
    check_values(raw, value_type=value_type)
    return raw


# --------------------------------------------------------------------------- GDC STAR folder


def read_gdc_sample_sheet(path: Path) -> pd.DataFrame:
    """The GDC portal's sample sheet, validated: one row per file, required columns present."""
    try:
        sheet = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise RnaError(f"{path}: cannot parse the GDC sample sheet as TSV: {err}") from None
    sheet.columns = [c.strip() for c in sheet.columns]
    missing = [c for c in GDC_SHEET_COLUMNS if c not in sheet.columns]
    if missing:
        raise RnaError(
            f"{path}: GDC sample sheet lacks column(s) {missing} (found {list(sheet.columns)}); "
            "download it from the GDC portal cart ('Sample Sheet')"
        )
    problems = []
    for i, row in enumerate(sheet.to_dict("records")):
        ref = f"{path}, line {i + 2}"
        if not row["File Name"].strip():
            problems.append(f"{ref}: empty File Name")
        if not row["Sample ID"].strip():
            problems.append(f"{ref}: empty Sample ID")
        elif "," in row["Sample ID"]:
            problems.append(f"{ref}: several Sample IDs ({row['Sample ID']}) for one file; "
                            "RNA-seq files belong to one sample")
    if problems:
        raise RnaError("invalid GDC sample sheet:\n  - " + "\n  - ".join(problems[:20]))
    for col in sheet.columns:
        sheet[col] = sheet[col].str.strip()
    return sheet


def read_star_counts(path: Path, *, value_type: str) -> tuple[pd.DataFrame, np.ndarray]:
    """One GDC ``augmented_star_gene_counts`` TSV: (features, values of the chosen column).

    The ``# gene-model: ...`` comment line(s) are skipped and the STAR summary rows
    (``N_unmapped``, ``N_multimapping``, ``N_noFeature``, ``N_ambiguous``) dropped: they are
    read counts that no gene owns, not genes.
    """
    if value_type not in STAR_COLUMNS:
        raise RnaError(
            f"{path}: GDC STAR files hold counts, TPM and FPKM(-UQ), not {value_type!r} values; "
            f"set rna.value_type to one of {sorted(STAR_COLUMNS)}"
        )
    column = STAR_COLUMNS[value_type]
    n_comment, header = 0, ""
    with _open_text(path) as fh:
        for line in fh:
            if not line.startswith("#"):
                header = line
                break
            n_comment += 1
    found = header.rstrip("\r\n").split("\t")
    needed = ["gene_id", "gene_name", "gene_type", column]
    missing = [c for c in needed if c not in found]
    if missing:
        raise RnaError(
            f"{path}: not a GDC STAR counts file, column(s) {missing} missing (found "
            f"{found}); rna.value_type={value_type!r} reads column {column!r}"
        )
    try:
        # Only the four needed columns: a cohort is ~1,000 files of 60,660 rows each.
        table = pd.read_csv(path, sep="\t", skiprows=n_comment, usecols=needed, dtype=str,
                            keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise RnaError(f"{path}: cannot parse as a GDC STAR counts TSV: {err}") from None
    table = table[~table["gene_id"].str.startswith("N_")]
    lines = table.index.to_numpy() + n_comment + 2  # file line of each row, for errors
    table = table.reset_index(drop=True)
    values = _to_numeric(table[column], path=path, what=lambda i: (
        f"gene {table['gene_id'].iat[i]} (line {lines[i]}), column {column}"
    ))
    return table[["gene_id", "gene_name", "gene_type"]].rename(
        columns={"gene_id": "label"}).assign(gene_id=lambda t: t["label"]), values


def read_gdc_folder(
    folder: Path, *, value_type: str, sample_sheet: Path | None = None
) -> RawRna:
    """All STAR count files under ``folder`` named in the GDC sample sheet, one row per sample.

    Files of the sheet that are missing, and files that the sheet does not name, are reported
    (warning) and left out. Two files for one ``Sample ID`` (re-sequenced aliquots) keep the
    one with the larger library, with a warning: the deeper library is the better estimate.
    """
    if sample_sheet is None:
        sample_sheet = _find_gdc_sheet(folder)
    sheet = read_gdc_sample_sheet(sample_sheet)
    on_disk = {}
    for f in sorted(folder.rglob("*" + STAR_SUFFIX)):
        if f.name in on_disk:
            raise RnaError(f"{folder}: two files named {f.name} ({on_disk[f.name]} and {f})")
        on_disk[f.name] = f
    if not on_disk:
        raise RnaError(f"{folder}: no *{STAR_SUFFIX} files found (searched subfolders too)")
    named = set(sheet["File Name"])
    missing = sorted(named - set(on_disk))
    extra = sorted(set(on_disk) - named)
    if missing:
        log.warning("%d files of %s are not under %s and are left out, e.g. %s", len(missing),
                    sample_sheet.name, folder, ", ".join(missing[:3]))
    if extra:
        log.warning("%d STAR files under %s are not in %s and are ignored, e.g. %s", len(extra),
                    folder, sample_sheet.name, ", ".join(extra[:3]))
    rows = sheet[sheet["File Name"].isin(on_disk)].sort_values("File Name")
    if rows.empty:
        raise RnaError(f"{sample_sheet}: none of its File Name entries is under {folder}")

    ref_ids: np.ndarray | None = None
    features = None
    columns = []
    for row in tqdm(rows.to_dict("records"), desc="GDC STAR files", unit="file", disable=None):
        path = on_disk[row["File Name"]]
        feats, vals = read_star_counts(path, value_type=value_type)
        ids = feats["label"].to_numpy()
        if ref_ids is None:
            ref_ids, features = ids, feats
        elif not np.array_equal(ids, ref_ids):
            if set(ids) != set(ref_ids) or len(ids) != len(ref_ids):
                diff = sorted(set(ids) ^ set(ref_ids))
                raise RnaError(
                    f"{path}: its genes differ from {on_disk[rows['File Name'].iat[0]]} "
                    f"({len(diff)} genes, e.g. {', '.join(diff[:3])}): files from different "
                    "gene models (GENCODE versions) cannot be combined"
                )
            vals = pd.Series(vals, index=ids).reindex(ref_ids).to_numpy()
        columns.append(vals)
    values = np.vstack(columns)
    meta = pd.DataFrame(
        {
            "sample_id": rows["Sample ID"].to_numpy(),
            "file": [str(on_disk[f]) for f in rows["File Name"]],
            "patient": rows["Case ID"].to_numpy(),
            "sample_type": [
                _sample_type(sid, stype) for sid, stype in zip(
                    rows["Sample ID"], rows["Sample Type"], strict=True)
            ],
            "aliases": [
                ";".join(a for a in (row.get("File ID", ""), row["File Name"]) if a)
                for row in rows.to_dict("records")
            ],
        }
    )
    values, meta = _dedupe_gdc(values, meta)
    assert features is not None
    return RawRna(
        values=values,
        sample_ids=meta.index.tolist(),
        features=features.reset_index(drop=True),
        sample_meta=meta,
        source=str(sample_sheet.parent if sample_sheet.parent == folder else folder),
        fmt="gdc_star",
        orientation=f"GDC STAR counts, {len(meta)} files, column {STAR_COLUMNS[value_type]!r}",
    )


def _dedupe_gdc(values: np.ndarray, meta: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    lib = values.sum(axis=1)
    order = sorted(range(len(meta)), key=lambda i: (meta["sample_id"].iat[i], -lib[i],
                                                    meta["file"].iat[i]))
    keep, seen = [], set()
    for i in order:
        sid = meta["sample_id"].iat[i]
        if sid in seen:
            log.warning("sample %s has several files; keeping %s (largest library), dropping %s",
                        sid, meta.loc[keep[-1], "file"], meta["file"].iat[i])
            continue
        seen.add(sid)
        keep.append(i)
    return values[keep], meta.iloc[keep].set_index("sample_id")


def _find_gdc_sheet(folder: Path) -> Path:
    candidates = sorted(folder.glob("gdc_sample_sheet*.tsv"))
    if not candidates:
        candidates = [p for p in sorted(folder.glob("*.tsv")) if _is_gdc_sample_sheet(p)]
    if len(candidates) != 1:
        found = ", ".join(p.name for p in candidates) or "none"
        raise RnaError(
            f"{folder}: expected exactly one GDC sample sheet (gdc_sample_sheet*.tsv with "
            f"columns {', '.join(GDC_SHEET_COLUMNS)}) in the folder, found {found}; or point "
            "cohorts.<name>.rna at the sample sheet itself"
        )
    return candidates[0]


def _is_gdc_sample_sheet(path: Path) -> bool:
    if path.suffix.lower() not in {".tsv", ".txt"}:
        return False
    header = _first_line(path).rstrip("\r\n").split("\t")
    return all(c in header for c in ("File Name", "Sample ID"))


def _sample_type(sample_id: str, sample_type: str) -> str:
    bc = parse_tcga_barcode(sample_id)
    if bc is not None and bc.sample_type:
        return bc.sample_type
    return GDC_SAMPLE_TYPES.get(sample_type.strip().lower(), "")


# --------------------------------------------------------------------------- matrices


def read_matrix(
    path: Path,
    *,
    value_type: str,
    sample_hints: Iterable[str] = (),
    gene_symbols: Iterable[str] = (),
) -> RawRna:
    """A genes × samples or samples × genes table; the first column holds the row IDs.

    In the genes × samples orientation, annotation columns (``gene_name``, ``gene_type``,
    ``gene_id``...) beside the sample columns are used for the gene mapping.
    """
    name = path.name.lower()
    if name.endswith(".parquet") or name.endswith(".pq"):
        table = _read_parquet(path)
        header = [str(c) for c in table.columns]
    else:
        sep = "," if name.removesuffix(".gz").endswith(".csv") else "\t"
        try:
            # The header is read apart because pandas renames duplicated names (A, A.1), which
            # would hide a duplicated sample.
            header = [str(h) for h in pd.read_csv(path, sep=sep, header=None, nrows=1,
                                                  dtype=str, keep_default_na=False).iloc[0]]
            table = pd.read_csv(path, sep=sep)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise RnaError(f"{path}: cannot parse as {'CSV' if sep == ',' else 'TSV'} "
                           f"(first column IDs, then one column per sample or gene): {err}") from None
    if table.shape[0] < 1:
        raise RnaError(f"{path}: the matrix has a header but no rows (no gene or sample below "
                       f"it): is the file complete?")
    if table.shape[1] < 2:
        raise RnaError(f"{path}: a matrix needs an ID column and at least one value column")
    row_labels = table.iloc[:, 0].astype(str).str.strip().tolist()
    col_labels = [h.strip() for h in header[1:]]
    annot = [j for j, c in enumerate(col_labels)
             if c.lower() in _ID_COLS | _NAME_COLS | _TYPE_COLS | _OTHER_ANNOT]
    value_idx = [j for j in range(len(col_labels)) if j not in annot]
    if not value_idx:
        raise RnaError(f"{path}: no value columns (only annotation columns "
                       f"{[col_labels[j] for j in annot]})")

    genes_by_samples, reason = detect_orientation(
        row_labels, [col_labels[j] for j in value_idx], sample_hints, gene_symbols)
    if genes_by_samples:
        sample_ids = [col_labels[j] for j in value_idx]
        _check_duplicate_labels(sample_ids, path, "sample (column)")
        gene_labels = row_labels
        features = pd.DataFrame({"label": row_labels})
        for j in annot:
            low = col_labels[j].lower()
            key = ("gene_id" if low in _ID_COLS else "gene_name" if low in _NAME_COLS
                   else "gene_type" if low in _TYPE_COLS else None)
            if key is not None:
                features[key] = table.iloc[:, j + 1].fillna("").astype(str).to_numpy()
    else:
        value_idx = list(range(len(col_labels)))  # in this orientation every column is a gene
        sample_ids, gene_labels = row_labels, col_labels
        _check_duplicate_labels(sample_ids, path, "sample (row)")
        features = pd.DataFrame({"label": gene_labels})
    orientation = (f"{'genes × samples' if genes_by_samples else 'samples × genes'} "
                   f"({len(sample_ids)} samples, {len(gene_labels)} genes; {reason})")
    log.info("%s: read as %s", path, orientation)

    values = np.empty((len(sample_ids), len(gene_labels)), dtype=np.float64)
    for k, j in enumerate(value_idx):
        series = table.iloc[:, j + 1]
        col = col_labels[j]
        if genes_by_samples:
            values[k, :] = _to_numeric(series, path=path, what=lambda i, c=col: (
                f"sample {c}, gene {row_labels[i]} (line {i + 2})"))
        else:
            values[:, k] = _to_numeric(series, path=path, what=lambda i, c=col: (
                f"sample {row_labels[i]} (line {i + 2}), gene {c}"))
    meta = pd.DataFrame(
        {"file": str(path), "patient": "", "sample_type": [_sample_type(s, "") for s in sample_ids],
         "aliases": ""},
        index=pd.Index(sample_ids, name="sample_id"),
    )
    return RawRna(values=values, sample_ids=list(sample_ids), features=features,
                  sample_meta=meta, source=str(path), fmt="matrix", orientation=orientation)


def detect_orientation(
    row_labels: list[str],
    col_labels: list[str],
    sample_hints: Iterable[str],
    gene_symbols: Iterable[str],
) -> tuple[bool, str]:
    """True if rows are genes. Returns (genes_by_samples, reason for the log).

    Votes: the share of labels that look like genes (Ensembl IDs or known HGNC symbols) and the
    share that look like samples (IDs of the sample sheet, TCGA barcodes), on each axis. When
    neither vote is clear (synthetic gene names, IDs not in the sheet), the longer axis is taken
    as genes -- RNA-seq has far more genes than samples -- with a warning.
    """
    hints = {str(h) for h in sample_hints if str(h)}
    symbols = gene_symbols if isinstance(gene_symbols, (set, frozenset)) else set(gene_symbols)

    def gene_like(labels: list[str]) -> float:
        return float(np.mean([is_ensembl(x) or x in symbols for x in labels])) if labels else 0.0

    def sample_like(labels: list[str]) -> float:
        return float(np.mean([x in hints or parse_tcga_barcode(x) is not None
                              for x in labels])) if labels else 0.0

    rg, cg = gene_like(row_labels), gene_like(col_labels)
    rs, cs = sample_like(row_labels), sample_like(col_labels)
    vote = (rg + cs) - (cg + rs)
    reason = (f"gene-like labels: rows {rg:.0%}, columns {cg:.0%}; sample-like: rows {rs:.0%}, "
              f"columns {cs:.0%}")
    if abs(vote) >= 0.3:
        return vote > 0, reason
    genes_rows = len(row_labels) >= len(col_labels)
    log.warning("matrix orientation unclear from its labels (%s); taking the longer axis (%s) "
                "as genes", reason, "rows" if genes_rows else "columns")
    return genes_rows, reason + "; unclear, longer axis taken as genes"


# --------------------------------------------------------------------------- h5ad


def read_h5ad(
    path: Path,
    *,
    value_type: str,
    sample_hints: Iterable[str] = (),
    gene_symbols: Iterable[str] = (),
) -> RawRna:
    """An AnnData file with obs = samples (a genes × samples file is transposed, with a log)."""
    import anndata as ad
    from scipy import sparse

    try:
        adata = ad.read_h5ad(path)
    except (OSError, KeyError, ValueError) as err:
        raise RnaError(f"{path}: cannot read as AnnData (.h5ad): {err}") from None
    use_layer = value_type == "counts" and "counts" in adata.layers
    matrix = adata.layers["counts"] if use_layer else adata.X
    if matrix is None:
        raise RnaError(f"{path}: the AnnData has no X (and no layers['counts'])")
    values = matrix.toarray() if sparse.issparse(matrix) else np.asarray(matrix)
    if not np.issubdtype(values.dtype, np.number):
        raise RnaError(f"{path}: {'layers[counts]' if use_layer else 'X'} is not numeric "
                       f"(dtype {values.dtype})")
    values = values.astype(np.float64)
    obs_names = adata.obs_names.astype(str).tolist()
    var_names = adata.var_names.astype(str).tolist()
    obs, var = adata.obs, adata.var
    genes_by_samples, reason = detect_orientation(obs_names, var_names, sample_hints,
                                                  gene_symbols)
    if genes_by_samples:
        log.warning("%s: obs look like genes and var like samples (%s); transposing", path,
                    reason)
        values = values.T
        obs_names, var_names, obs, var = var_names, obs_names, var, obs
    _check_duplicate_labels(obs_names, path, "sample (obs name)")
    features = pd.DataFrame({"label": var_names})
    for col in var.columns:
        low = str(col).lower()
        key = ("gene_id" if low in _ID_COLS else "gene_name" if low in _NAME_COLS
               else "gene_type" if low in _TYPE_COLS else None)
        if key is not None and key not in features:
            features[key] = var[col].astype(str).replace({"nan": ""}).to_numpy()
    patient = (obs["patient_id"].astype(str).to_numpy() if "patient_id" in obs.columns
               else obs["case_id"].astype(str).to_numpy() if "case_id" in obs.columns else "")
    meta = pd.DataFrame(
        {"file": str(path), "patient": patient,
         "sample_type": [_sample_type(s, "") for s in obs_names], "aliases": ""},
        index=pd.Index(obs_names, name="sample_id"),
    )
    where = "layers['counts']" if use_layer else "X"
    orientation = (f"AnnData {where}, {len(obs_names)} samples × {len(var_names)} genes"
                   + (" (transposed)" if genes_by_samples else ""))
    return RawRna(values=values, sample_ids=obs_names, features=features, sample_meta=meta,
                  source=str(path), fmt="h5ad", orientation=orientation)


# --------------------------------------------------------------------------- validation


def check_values(raw: RawRna, value_type: str = "counts") -> None:
    """Reject values the declared ``value_type`` cannot hold: missing/infinite, or negative
    for counts / TPM / FPKM (log-scale and z-scored values may be negative)."""
    checks = [(~np.isfinite(raw.values), "a missing or infinite value",
               "fill it or drop the gene/sample")]
    if value_type not in SIGNED_VALUE_TYPES:
        checks.append((raw.values < 0, "a negative value",
                       f"rna.value_type is {value_type!r}, which is never negative: for log-scale "
                       "values (log2 microarray, log-CPM) set rna.value_type: log, for z-scores "
                       "rna.value_type: zscore"))
    for mask, what, hint in checks:
        if mask.any():
            i, j = np.argwhere(mask)[0]
            sid = raw.sample_ids[i]
            n = int(mask.sum())
            raise RnaError(
                f"{raw.sample_meta.loc[sid, 'file']}: sample {sid}, gene "
                f"{raw.features['label'].iat[j]} has {what} ({raw.values[i, j]!r}); {n} such "
                f"value(s) in all; {hint}"
            )


def _to_numeric(series: pd.Series, *, path: Path, what) -> np.ndarray:
    """Column → float64; a non-numeric or missing cell raises, naming file and cell."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        out = series.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        text = series.astype(str).str.strip()
        out = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(np.isnan(out) & ~text.str.lower().isin(["nan", "na", ""]).to_numpy())
        if len(bad):
            i = int(bad[0])
            raise RnaError(
                f"{path}: non-numeric value {text.iat[i]!r} for {what(i)}; {len(bad)} such "
                "cell(s) in this column. Expression values must be numbers"
            )
    missing = np.flatnonzero(np.isnan(out))
    if len(missing):
        i = int(missing[0])
        raise RnaError(f"{path}: missing value for {what(i)}; {len(missing)} such cell(s) in this "
                       "column. Fill them (0 for a gene not detected) or drop the gene/sample")
    return out


def _check_duplicate_labels(labels: list[str], path: Path, what: str) -> None:
    seen, dups = set(), []
    for x in labels:
        if x in seen:
            dups.append(x)
        seen.add(x)
    if dups:
        raise RnaError(
            f"{path}: duplicated {what} IDs: {', '.join(sorted(set(dups))[:10])}; each sample must "
            "appear once (merge or rename the duplicates)"
        )


def _read_parquet(path: Path) -> pd.DataFrame:
    """A parquet matrix with its row IDs as the first column (a stored index becomes one)."""
    try:
        table = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for a broken file
        raise RnaError(f"{path}: cannot read as parquet: {err}") from None
    if not isinstance(table.index, pd.RangeIndex):
        table = table.reset_index()
    return table


def _first_line(path: Path) -> str:
    try:
        with _open_text(path) as fh:
            return fh.readline()
    except (OSError, UnicodeDecodeError):
        return ""


def _open_text(path: Path):
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", newline="")
    return path.open(newline="")


