"""End to end: RNA input + canonical sample sheet → ``rna/{cohort}.h5ad`` (+ QC figure, summary).

The h5ad contract (what the model stages may rely on)
-----------------------------------------------------

- ``obs``: indexed by ``patient_id``, one row per patient WITH RNA, sorted by ID. Columns
  ``rna_sample_id`` (the sample kept for that patient), ``site``, ``label``, ``time`` (float),
  ``event`` (nullable int, 1 = event observed), plus ``library_size`` (sum of the input values
  over mapped genes; NaN for log / z-score input, which has no library), ``n_genes_detected``
  (values > 0; NaN for log / z-score) and ``rna_sample_type`` (TCGA code or "").
- ``uns["patients_without_rna"]``: patients of the sheet without an RNA sample. They stay in
  the cohort (slide-only student and WSI baselines use them); they are not rows of ``obs``.
- ``var``: indexed by HGNC symbol, sorted, unique. ``ensembl_id`` (unversioned, "" where
  unknown), ``gene_type`` ("" where the input had none), ``n_collapsed`` (input rows merged
  into the symbol), ``highly_variable``, ``group_T``, ``group_E`` (booleans).
- ``layers["counts"]``: the input values as read (raw counts for ``value_type: counts``;
  TPM / FPKM / FPKM-UQ, log-scale values or z-scores otherwise, see ``uns["normalisation"]``),
  int32 when integral counts.
- ``X``: float32 log1p of library-size-normalised counts (CPM by default) or of TPM/FPKM(-UQ);
  for ``value_type: log`` / ``zscore`` the input values as given (already transformed; a
  z-scored input was standardised by whoever made it, possibly over all patients). Not
  z-scored here: use :func:`duopath.rna.normalise.fit_scaler` on a fold's training patients and
  :func:`~duopath.rna.normalise.apply_scaler`, so held-out patients never shape the inputs.
- ``obsm["pathways"]``: DataFrame, patients × scored gene sets (method in
  ``uns["gene_sets"]["method"]``); ``obsm["group_scores"]``: DataFrame with columns ``T``, ``E``
  (the same score over each whole group).
- ``uns["gene_groups"]``: ``{"T": [...], "E": [...]}`` genes present in ``var`` (and HVG when
  ``rna.groups_from_hvg``); ``uns["gene_sets"]``: per set ``name``, ``source``, ``group``
  (T/E/""), ``n_genes``, ``n_present``, ``scored``, plus ``method``, ``tumour_sets``,
  ``tme_sets`` and the Hallmark citation when used.
- ``uns["provenance"]``: duopath version, settings JSON, input file name, format, detected
  orientation, join mode, gene map. ``uns["genes"]``: mapping report; ``uns["rna_samples"]``:
  unmatched and dropped samples. ``uns["hvg"]``, ``uns["normalisation"]``: parameters.

The output does not depend on the row or column order of any input: patients and genes are
sorted, and every choice (duplicate genes, several samples per patient) has an ID-based rule.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from duopath import __version__
from duopath.cohort import read_canonical_sheet
from duopath.config import RnaConfig
from duopath.io import atomic_path, write_text
from duopath.rna import RnaError
from duopath.rna.genes import (
    GeneReport,
    collapse_repeated_genes,
    harmonise_genes,
    load_gene_map,
    load_user_gene_map,
)
from duopath.rna.genesets import HALLMARK, HALLMARK_CITATION, Groups, build_groups, load_gene_sets
from duopath.rna.join import JoinResult, join_samples, patient_table
from duopath.rna.readers import RawRna, read_rna

log = logging.getLogger(__name__)

@dataclass
class BuildReport:
    """What happened, for the text summary and the tests."""

    raw: RawRna
    join: JoinResult
    genes: GeneReport
    groups: Groups
    n_zero_genes: int
    empty_samples: list[str]


def build_rna(
    source: Path | str,
    sheet: Path | str,
    settings: RnaConfig,
    out: Path | str,
    *,
    qc: Path | str | None = None,
    summary: Path | str | None = None,
):
    """Build and write the cohort's AnnData (contract in the module docstring); returns it.

    Raises:
        SampleSheetError: ``sheet`` is not a readable canonical sheet (``cohort.read_canonical_sheet``).
        RnaError: the RNA input, gene sets or settings are unusable.
    """
    import anndata as ad

    from duopath.rna.normalise import normalise, select_hvg
    from duopath.rna.scores import score_sets

    source = Path(source)
    log.info("RNA settings: %s", settings.model_dump_json())
    sheet_df = read_canonical_sheet(sheet, required=("rna_sample_id",))
    # Gene sets first: a typo in a set name or a bad GMT fails before a large input is read.
    sets = load_gene_sets(settings.gene_sets)
    gene_map = load_gene_map()
    user_map = load_user_gene_map(settings.gene_map) if settings.gene_map is not None else None
    known_symbols = set(gene_map.symbols) | {g for gs in sets for g in gs.genes}
    if user_map is not None:
        known_symbols |= set(user_map) | {s for s in user_map.values() if s}
    hints = set(sheet_df["rna_sample_id"]) | set(sheet_df["patient_id"])
    raw = read_rna(source, value_type=settings.value_type, sample_hints=hints,
                   gene_symbols=known_symbols)
    log.info("%s: %d samples × %d genes (%s)", source, len(raw.sample_ids), raw.values.shape[1],
             raw.orientation)

    join = join_samples(sheet_df, raw.sample_meta, mode=settings.join,
                        preference=settings.sample_type_preference, source=str(source))
    patients = sorted(join.chosen)
    samples = [join.chosen[p] for p in patients]
    pos = {s: i for i, s in enumerate(raw.sample_ids)}
    values = raw.values[[pos[s] for s in samples]]

    values, features = collapse_repeated_genes(values, raw.features, rule=settings.duplicate_genes,
                                               source=str(source))
    matrix, var, gene_report = harmonise_genes(
        values, features, gene_map=gene_map,
        protein_coding_only=settings.protein_coding_only,
        duplicate_rule=settings.resolved_duplicate_rule, user_map=user_map,
        known_symbols=known_symbols, min_recognised=settings.min_mapped_fraction,
        user_map_source=f"rna.gene_map {settings.gene_map}",
    )
    _check_scale(matrix, settings.value_type, source)
    lib = matrix.sum(axis=1)
    # log / z-score input has no library: an "empty" sample is one without any variation
    empty_mask = (np.ptp(matrix, axis=1) == 0) if settings.is_log_scale else lib <= 0
    empty = [samples[i] for i in np.flatnonzero(empty_mask)]
    if empty:
        files = raw.sample_meta.loc[empty, "file"]
        detail = ", ".join(f"{s} (patient {patients[samples.index(s)]}, {files[s]})"
                           for s in empty[:5])
        if not settings.drop_empty_samples:
            what = ("the same value in every mapped gene" if settings.is_log_scale
                    else "no counts in any mapped gene")
            raise RnaError(
                f"{len(empty)} RNA sample(s) have {what}: {detail}. A failed "
                "library cannot be normalised: remove it from the input, or set "
                "rna.drop_empty_samples: true to treat its patient as having no RNA"
            )
        log.warning("dropping %d all-zero RNA sample(s): %s", len(empty), detail)
        keep = ~empty_mask
        matrix = matrix[keep]
        dropped_patients = [p for p, k in zip(patients, keep, strict=True) if not k]
        patients = [p for p, k in zip(patients, keep, strict=True) if k]
        samples = [s for s, k in zip(samples, keep, strict=True) if k]
        join.patients_without_rna = sorted(join.patients_without_rna + dropped_patients)
    if len(patients) < 2:
        raise RnaError(f"{source}: only {len(patients)} patient(s) with RNA; at least 2 are needed")
    # a gene without information: zero everywhere (linear scales), constant (log / z-scores)
    zero_genes = ((np.ptp(matrix, axis=0) == 0) if settings.is_log_scale
                  else ~(matrix > 0).any(axis=0))
    if zero_genes.any():
        log.info("%d genes are %s in every kept sample and are left out", int(zero_genes.sum()),
                 "constant" if settings.is_log_scale else "zero")
        matrix, var = matrix[:, ~zero_genes], var.loc[~zero_genes].copy()

    obs = patient_table(sheet_df).loc[patients]
    obs.insert(0, "rna_sample_id", samples)
    if settings.is_log_scale:
        obs["library_size"] = np.nan
        obs["n_genes_detected"] = np.nan
    else:
        obs["library_size"] = matrix.sum(axis=1)
        obs["n_genes_detected"] = (matrix > 0).sum(axis=1).astype(np.int32)
    obs["rna_sample_type"] = [str(raw.sample_meta.loc[s, "sample_type"]) for s in samples]
    obs["event"] = obs["event"].astype("Int64")
    obs["time"] = obs["time"].astype(np.float64)
    obs.index = pd.Index(patients, name="patient_id")

    integral = settings.value_type == "counts" and np.array_equal(matrix, np.round(matrix))
    if settings.value_type == "counts" and not integral:
        log.warning("value_type is counts but %s holds non-integer values (e.g. RSEM expected "
                    "counts); they are kept as floats", source)
    counts = (matrix.astype(np.int32) if integral and matrix.max() < 2**31
              else matrix.astype(np.float32))
    adata = ad.AnnData(X=counts.astype(np.float32), obs=obs, var=var)
    adata.layers["counts"] = counts
    normalise(adata, value_type=settings.value_type, target_sum=settings.target_sum)
    n_hvg = select_hvg(adata, fraction=settings.hvg_fraction, method=settings.resolved_hvg_method)
    log.info("%d of %d genes flagged highly variable", n_hvg, adata.n_vars)

    groups = build_groups(
        sets, adata.var_names, tumour_sets=settings.tumour_sets, tme_sets=settings.tme_sets,
        overlap=settings.group_overlap, min_set_genes=settings.min_set_genes,
        hvg=adata.var_names[adata.var["highly_variable"].to_numpy()]
        if settings.groups_from_hvg else None,
    )
    adata.var["group_T"] = adata.var_names.isin(groups.tumour)
    adata.var["group_E"] = adata.var_names.isin(groups.tme)
    log.info("gene groups: T %d genes, E %d genes (%d in both sets, rule %r)",
             len(groups.tumour), len(groups.tme), len(groups.overlap), settings.group_overlap)

    present = set(adata.var_names)
    is_scored = dict(zip(groups.table["name"], groups.table["scored"], strict=True))
    scored = {gs.name: [g for g in gs.genes if g in present] for gs in sets if is_scored[gs.name]}
    adata.obsm["pathways"] = score_sets(adata, scored, method=settings.score_method)
    adata.obsm["group_scores"] = score_sets(adata, {"T": groups.tumour, "E": groups.tme},
                                            method=settings.score_method)

    table = groups.table
    adata.uns["gene_groups"] = {"T": _strs(groups.tumour), "E": _strs(groups.tme)}
    adata.uns["gene_sets"] = {
        "name": _strs(table["name"]),
        "source": _strs(table["source"]),
        "group": _strs(table["group"]),
        "n_genes": table["n_genes"].to_numpy(np.int32),
        "n_present": table["n_present"].to_numpy(np.int32),
        "scored": table["scored"].to_numpy(bool),
        "method": settings.score_method,
        "tumour_sets": _strs(settings.tumour_sets),
        "tme_sets": _strs(settings.tme_sets),
        "group_overlap": settings.group_overlap,
        "groups_from_hvg": settings.groups_from_hvg,
        **({"citation": HALLMARK_CITATION} if HALLMARK in settings.gene_sets else {}),
    }
    adata.uns["patients_without_rna"] = _strs(join.patients_without_rna)
    adata.uns["rna_samples"] = {
        "unmatched": _strs(join.unmatched_samples),
        "not_found": _strs(join.not_found),
        "dropped_patient": _strs([p for p, ss in join.dropped.items() for _ in ss]),
        "dropped_sample": _strs([s for ss in join.dropped.values() for s in ss]),
        "empty": _strs(empty),
    }
    adata.uns["genes"] = {
        "n_input": gene_report.n_input,
        "n_mapped": gene_report.n_mapped,
        "mapped_fraction": gene_report.mapped_fraction,
        "n_unmapped": len(gene_report.unmapped),
        "unmapped_examples": _strs(gene_report.unmapped[:20]),
        "n_par_y": gene_report.n_par_y,
        "n_not_protein_coding": gene_report.n_not_protein_coding,
        "n_duplicate_rows": gene_report.n_duplicate_rows,
        "n_all_zero": int(zero_genes.sum()),
        "n_user_mapped": gene_report.n_user_mapped,
        "n_unrecognised": len(gene_report.unrecognised),
        "unrecognised_examples": _strs(gene_report.unrecognised[:20]),
        "duplicate_rule": settings.resolved_duplicate_rule,
    }
    adata.uns["provenance"] = {
        "duopath_version": __version__,
        "settings": settings.model_dump_json(),
        "input": source.name,
        "input_format": raw.fmt,
        "orientation": raw.orientation,
        "join_mode": join.mode,
        "gene_map": gene_map.source,
        "user_gene_map": "" if settings.gene_map is None else Path(settings.gene_map).name,
    }

    with atomic_path(out) as tmp:
        adata.write_h5ad(tmp, compression="gzip")
    log.info("wrote %s: %d patients × %d genes", out, adata.n_obs, adata.n_vars)
    report = BuildReport(raw=raw, join=join, genes=gene_report, groups=groups,
                         n_zero_genes=int(zero_genes.sum()), empty_samples=empty)
    if qc is not None or summary is not None:
        from duopath.rna.qc import qc_figure, summary_text

        if qc is not None:
            qc_figure(adata, qc)
        if summary is not None:
            write_text(summary, summary_text(adata, report, sheet_df))
    return adata


#: Largest value a log2-scale expression matrix plausibly holds (log2 of ~1e9); linear counts
#: and TPM of a real transcriptome exceed it in nearly every sample.
LOG_SCALE_MAX = 30.0


def _check_scale(matrix: np.ndarray, value_type: str, source: Path) -> None:
    """Warn when the values contradict ``value_type`` (the commonest processed-RNA mistake).

    Linear values (counts, TPM) whose every entry is below :data:`LOG_SCALE_MAX` and non-integral
    look log-transformed already: log1p'ing them again flattens the signal. Log-scale values
    above 100 look linear. A warning, not an error: a tiny targeted panel can be either.
    """
    if not matrix.size:
        return
    top = float(np.max(matrix))
    if value_type in ("counts", "tpm", "fpkm", "fpkm_uq"):
        if top < LOG_SCALE_MAX and not np.array_equal(matrix, np.round(matrix)):
            log.warning("%s: rna.value_type is %s but every value is below %g and non-integer, "
                        "as log-scale data are; set rna.value_type: log if they are", source,
                        value_type, LOG_SCALE_MAX)
    elif value_type == "log" and top > 100:
        log.warning("%s: rna.value_type is log but values reach %g, as linear counts/TPM do; set "
                    "rna.value_type: counts or tpm if they are not log-transformed", source, top)


def settings_from_json(text: str) -> RnaConfig:
    """Parse the ``--settings`` JSON of the rule (an empty string means the defaults)."""
    from pydantic import ValidationError

    try:
        return RnaConfig.model_validate(json.loads(text) if text.strip() else {})
    except json.JSONDecodeError as err:
        raise RnaError(f"--settings is not valid JSON: {err}") from None
    except ValidationError as err:
        lines = [f"  - rna.{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}"
                 for e in err.errors()]
        raise RnaError("invalid rna settings:\n" + "\n".join(lines)) from None


def _strs(items) -> np.ndarray:
    """A string array that round-trips through h5ad even when empty (a bare [] does not)."""
    return np.asarray(list(items), dtype=str)
