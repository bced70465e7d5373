"""Gene identifiers: Ensembl version stripping, Ensembl ↔ HGNC mapping, duplicate collapsing.

Why symbols as the key: gene sets (Hallmarks, ESTIMATE, MCAT...) are published as HGNC
symbols, and the model's gene groups are built from them. Ensembl IDs are kept beside the
symbol (``var["ensembl_id"]``) where known.

Sources of the mapping, in order of trust:

1. the input's own annotation (GDC STAR files carry ``gene_name`` of GENCODE v36);
2. the packaged GENCODE v31 map (``data/genesets/gencode.v31...stripped.txt``: protein-coding,
   TR_C and IG_C genes of level 1/2), matched on the *unversioned* ID. Symbols renamed after
   v31 keep their v31 name, and lncRNAs are not in it: an Ensembl-only matrix loses those
   genes (they are reported as unmapped, never silently renamed).

Repeated genes (the input lists one gene on several rows: the same symbol, or the same Ensembl
ID in any version) are handled first, by ``rna.duplicate_genes`` (:func:`collapse_repeated_genes`):
an error naming them by default, since a repeated row is usually a merge or export mistake.

Duplicate rule (several distinct input genes end up with one symbol, e.g. two loci named alike,
GENCODE's ~50 such symbols in every STAR file): ``sum`` adds them (counts and TPM are additive over the
features of one gene), ``max_mean`` keeps the row with the highest mean. ``_PAR_Y`` rows
(GENCODE's Y copies of pseudo-autosomal genes, zero in GDC counts) are dropped.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import pandas as pd
from scipy import sparse

from duopath.rna import RnaError

log = logging.getLogger(__name__)

GENE_MAP_FILE = "gencode.v31.annotation.gene_l1l2.pc_TRC_IGC.stripped.txt"
_ENSEMBL = re.compile(r"^(ENS[A-Z]*G\d{6,})(\.\d+)?(_PAR_Y)?$")


def strip_version(gene_id: str) -> str:
    """``ENSG00000186092.6`` → ``ENSG00000186092``; non-Ensembl labels are returned unchanged.

    ``_PAR_Y`` suffixes are kept (``ENSG..._PAR_Y``) so the caller can drop those rows rather
    than merge a Y copy into its X gene.
    """
    m = _ENSEMBL.match(gene_id.strip())
    if not m:
        return gene_id.strip()
    return m.group(1) + (m.group(3) or "")


def is_ensembl(label: str) -> bool:
    """True for Ensembl gene IDs, with or without version (``ENSG...``, ``ENSMUSG...``)."""
    return bool(_ENSEMBL.match(str(label).strip()))


@dataclass(frozen=True)
class GeneMap:
    """Unversioned Ensembl ID ↔ HGNC symbol, plus the protein-coding set (GENCODE v31)."""

    ensembl_to_symbol: dict[str, str]
    symbol_to_ensembl: dict[str, str]
    source: str

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(self.symbol_to_ensembl)


@functools.cache
def load_gene_map() -> GeneMap:
    """The packaged GENCODE v31 map (cached: read once per process)."""
    ref = resources.files("duopath") / "data" / "genesets" / GENE_MAP_FILE
    with resources.as_file(ref) as path:
        table = pd.read_csv(path, sep="\t", header=None, names=["gene_id", "symbol"], dtype=str)
    return gene_map_from_table(table, source=f"GENCODE v31 ({GENE_MAP_FILE}, packaged)")


def gene_map_from_table(table: pd.DataFrame, *, source: str) -> GeneMap:
    """Build a :class:`GeneMap` from columns ``gene_id`` (versioned or not) and ``symbol``.

    ``_PAR_Y`` rows are skipped. A symbol with several IDs maps back to the smallest ID, so the
    reverse mapping is deterministic.
    """
    ids = table["gene_id"].astype(str).map(strip_version)
    keep = ~ids.str.endswith("_PAR_Y")
    ids, syms = ids[keep], table.loc[keep, "symbol"].astype(str).str.strip()
    e2s = dict(zip(ids, syms, strict=True))
    s2e: dict[str, str] = {}
    for gid, sym in sorted(zip(ids, syms, strict=True)):
        s2e.setdefault(sym, gid)
    return GeneMap(ensembl_to_symbol=e2s, symbol_to_ensembl=s2e, source=source)


def collapse_repeated_genes(
    values: np.ndarray, features: pd.DataFrame, *, rule: str, source: str
) -> tuple[np.ndarray, pd.DataFrame]:
    """Input rows naming the same gene (samples × features ``values``): error, sum or first.

    The gene is its ``gene_id`` where the input has one, else its label, Ensembl version
    stripped (``ENSG...5`` and ``ENSG...6`` are one gene). Distinct IDs sharing a symbol are not
    repeats (:func:`harmonise_genes` handles them). Returns ``values`` and ``features`` with one
    column/row per gene, in first-appearance order.
    """
    labels = features["label"].astype(str).str.strip()
    ids = (features["gene_id"].fillna("").astype(str).str.strip()
           if "gene_id" in features.columns else pd.Series("", index=features.index))
    key = ids.where(ids != "", labels).map(strip_version).reset_index(drop=True)
    repeated = key[key.duplicated(keep=False)].unique()
    if not len(repeated):
        return values, features
    shown = ", ".join(map(str, sorted(repeated)[:10])) + (" ..." if len(repeated) > 10 else "")
    if rule == "error":
        raise RnaError(
            f"{source}: {len(repeated)} gene(s) are listed on more than one row: {shown}. Each "
            "gene must appear once: fix the input, or set rna.duplicate_genes: sum (add the "
            "rows) or first (keep the first row)"
        )
    log.warning("%s: %d gene(s) listed on more than one row (%s); rna.duplicate_genes: %s",
                source, len(repeated), shown, rule)
    first = ~key.duplicated(keep="first").to_numpy()
    kept = features.reset_index(drop=True)[first].reset_index(drop=True)
    if rule == "first":
        return values[:, first], kept
    if rule != "sum":
        raise ValueError(f"unknown duplicate_genes rule {rule!r}")
    codes, _ = pd.factorize(key)  # first-appearance order, as ``kept``
    indicator = sparse.csr_matrix((np.ones(len(codes)), (np.arange(len(codes)), codes)),
                                  shape=(len(codes), int(first.sum())))
    return np.asarray((indicator.T @ values.T.astype(np.float64)).T), kept


@dataclass
class GeneReport:
    """What harmonisation did, for the log and the QC summary."""

    n_input: int = 0
    n_par_y: int = 0
    n_mapped: int = 0
    unmapped: list[str] = field(default_factory=list)
    n_not_protein_coding: int = 0
    n_duplicate_rows: int = 0
    n_symbols: int = 0

    @property
    def mapped_fraction(self) -> float:
        usable = self.n_input - self.n_par_y
        return self.n_mapped / usable if usable else 0.0


def harmonise_genes(
    values: np.ndarray,
    features: pd.DataFrame,
    *,
    gene_map: GeneMap,
    protein_coding_only: bool,
    duplicate_rule: str,
) -> tuple[np.ndarray, pd.DataFrame, GeneReport]:
    """Map input features (columns of ``values``, samples × features) to unique HGNC symbols.

    ``features`` is positional (one row per column of ``values``) with ``label`` and optional
    ``gene_id``, ``gene_name``, ``gene_type`` columns (empty string = unknown). Returns the
    samples × symbols matrix (columns sorted by symbol, so input row order never matters), the
    var table (index symbol; ``ensembl_id``, ``gene_type``, ``n_collapsed``) and a report.
    """
    if values.shape[1] != len(features):
        raise ValueError("values and features disagree on the number of genes")
    feats = features.reset_index(drop=True).copy()
    for col in ("gene_id", "gene_name", "gene_type"):
        if col not in feats.columns:
            feats[col] = ""
        feats[col] = feats[col].fillna("").astype(str).str.strip()
    labels = feats["label"].astype(str).str.strip()
    report = GeneReport(n_input=len(feats))

    # Ensembl ID: from the gene_id column, else from a label that is an Ensembl ID.
    raw_id = feats["gene_id"].where(feats["gene_id"] != "", labels.where(labels.map(is_ensembl), ""))
    ens = raw_id.map(lambda g: strip_version(g) if g else "")
    par_y = ens.str.endswith("_PAR_Y")
    report.n_par_y = int(par_y.sum())

    # Symbol: the input's own name, else the map, else a label that is not an Ensembl ID.
    sym = feats["gene_name"].copy()
    from_map = (sym == "") & (ens != "")
    sym[from_map] = ens[from_map].map(gene_map.ensembl_to_symbol).fillna("")
    label_is_symbol = (sym == "") & (ens == "") & ~labels.map(is_ensembl)
    sym[label_is_symbol] = labels[label_is_symbol]
    ens = ens.where(ens != "", sym.map(gene_map.symbol_to_ensembl).fillna(""))

    mapped = (sym != "") & ~par_y
    report.n_mapped = int(mapped.sum())
    report.unmapped = labels[(sym == "") & ~par_y].tolist()
    if report.unmapped:
        log.warning(
            "%d of %d genes have no HGNC symbol (not in the input annotation nor in %s) and are "
            "left out, e.g. %s",
            len(report.unmapped), report.n_input - report.n_par_y, gene_map.source,
            ", ".join(report.unmapped[:5]),
        )
    keep = mapped.to_numpy()
    if protein_coding_only:
        pc = _protein_coding(feats["gene_type"], sym, gene_map)
        report.n_not_protein_coding = int((keep & ~pc).sum())
        keep &= pc
    if not keep.any():
        raise RnaError(
            "no gene is left after mapping to HGNC symbols"
            + (" and keeping protein-coding genes" if protein_coding_only else "")
            + f" (e.g. input genes {', '.join(labels[:5])}): are they human Ensembl IDs or HGNC "
            "symbols?"
        )

    vals = values[:, keep]
    table = pd.DataFrame(
        {"symbol": sym[keep].to_numpy(), "ensembl_id": ens[keep].to_numpy(),
         "gene_type": feats["gene_type"][keep].to_numpy(), "mean": vals.mean(axis=0)}
    )
    table["col"] = np.arange(len(table))
    report.n_duplicate_rows = int(table["symbol"].duplicated(keep=False).sum())
    if report.n_duplicate_rows:
        dups = table.loc[table["symbol"].duplicated(), "symbol"].unique()
        log.info(
            "%d input genes share %d symbols (e.g. %s); rule %r", report.n_duplicate_rows,
            len(dups), ", ".join(map(str, dups[:5])), duplicate_rule,
        )
    # The representative row of each symbol (its ensembl_id/gene_type): highest mean, then
    # smallest Ensembl ID, so the result does not depend on input row order.
    table = table.sort_values(["symbol", "mean", "ensembl_id"], ascending=[True, False, True],
                              kind="mergesort")
    rep = table.drop_duplicates("symbol", keep="first").set_index("symbol")
    counts = table.groupby("symbol", sort=True)["col"].size()
    if duplicate_rule == "sum":
        # A sparse row → symbol indicator: one matrix product sums every duplicate group.
        codes, symbols = pd.factorize(table["symbol"], sort=True)
        indicator = sparse.csr_matrix(
            (np.ones(len(codes)), (table["col"].to_numpy(), codes)),
            shape=(vals.shape[1], len(symbols)),
        )
        out = np.asarray((indicator.T @ vals.T.astype(np.float64)).T)
    elif duplicate_rule == "max_mean":
        symbols = rep.index
        out = vals[:, rep.loc[symbols, "col"].to_numpy()].astype(np.float64)
    else:
        raise ValueError(f"unknown duplicate_rule {duplicate_rule!r}")
    var = pd.DataFrame(
        {
            "ensembl_id": rep.loc[symbols, "ensembl_id"].to_numpy(),
            "gene_type": rep.loc[symbols, "gene_type"].to_numpy(),
            "n_collapsed": counts.loc[symbols].to_numpy().astype(np.int32),
        },
        index=pd.Index(np.asarray(symbols, dtype=str), name="symbol"),
    )
    report.n_symbols = len(var)
    return out, var, report


def _protein_coding(gene_type: pd.Series, sym: pd.Series, gene_map: GeneMap) -> np.ndarray:
    """Protein-coding mask: the input's gene_type where given, else membership of the map."""
    known = gene_type != ""
    in_map = sym.isin(gene_map.symbol_to_ensembl.keys())
    return np.where(known, gene_type == "protein_coding", in_map).astype(bool)
