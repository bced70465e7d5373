"""Gene identifiers: Ensembl version stripping, Ensembl ↔ HGNC mapping, duplicate collapsing.

Why symbols as the key: gene sets (Hallmarks, ESTIMATE, MCAT...) are published as HGNC
symbols, and the model's gene groups are built from them. Ensembl IDs are kept beside the
symbol (``var["ensembl_id"]``) where known.

Sources of the mapping, in order of trust:

0. a user mapping file (``rna.gene_map``: input ID → symbol, e.g. a microarray platform's
   probe → gene table), for the IDs it lists;
1. the input's own annotation (GDC STAR files carry ``gene_name`` of GENCODE v36);
2. the packaged GENCODE v31 map (``data/genesets/gencode.v31...stripped.txt``: protein-coding,
   TR_C and IG_C genes of level 1/2), matched on the *unversioned* ID. Symbols renamed after
   v31 keep their v31 name, and lncRNAs are not in it: an Ensembl-only matrix loses those
   genes (they are reported as unmapped, never silently renamed).

Repeated genes (the input lists one gene on several rows: the same symbol, or the same Ensembl
ID in any version) are handled first, by ``rna.duplicate_genes`` (:func:`collapse_repeated_genes`):
an error naming them by default, since a repeated row is usually a merge or export mistake.

Duplicate rule (several distinct input IDs end up with one symbol, e.g. two loci named alike,
GENCODE's ~50 such symbols in every STAR file, or several microarray probes of one gene):
``sum`` adds them (counts and TPM are additive over the features of one gene), ``mean``
averages them (log-scale and z-scored values, where a sum would be a product), ``max_mean``
keeps the row with the highest mean.

Unrecognised IDs: a label that is neither an Ensembl ID, a known symbol (packaged map or a
gene set) nor in the user map is still kept as a symbol (a renamed gene keeps its data), but when
fewer than ``rna.min_mapped_fraction`` of the input is recognised the build stops: the IDs are
of another kind (probe IDs, another species) and would silently fall out of every gene set. ``_PAR_Y`` rows
(GENCODE's Y copies of pseudo-autosomal genes, zero in GDC counts) are dropped.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

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


def load_user_gene_map(path: Path | str) -> dict[str, str]:
    """A user's ID → symbol table (``rna.gene_map``): CSV/TSV, header row, first two columns.

    E.g. a GEO platform annotation (``ID``, ``Gene Symbol``) cut to two columns. An empty symbol
    (control probes) and a multi-gene symbol (``A /// B``, a probe hybridising to several
    genes) map to ``""``: such IDs are left out as unmapped rather than guessed. One ID listed
    twice with different symbols is an error naming both lines.
    """
    path = Path(path)
    sep = "," if path.name.lower().removesuffix(".gz").endswith(".csv") else "\t"
    try:
        table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise RnaError(f"gene map {path}: cannot read it as {'CSV' if sep == ',' else 'TSV'}: "
                       f"{err}") from None
    if table.shape[1] < 2:
        raise RnaError(
            f"gene map {path}: needs two columns (input ID, HGNC symbol) after a header row, "
            f"found {list(table.columns)}"
            + (" (a TSV needs tabs; a CSV needs a .csv name)" if table.shape[1] == 1 else "")
        )
    if table.empty:
        raise RnaError(f"gene map {path}: no rows after the header")
    ids = table.iloc[:, 0].str.strip()
    syms = table.iloc[:, 1].str.strip()
    syms = syms.where(~syms.str.contains("///", regex=False), "")
    if (ids == "").any():
        raise RnaError(f"gene map {path}, line {int(np.flatnonzero(ids == '')[0]) + 2}: empty ID")
    out: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for i, (gid, sym) in enumerate(zip(ids, syms, strict=True)):
        if gid in out and out[gid] != sym:
            raise RnaError(
                f"gene map {path}: ID {gid} maps to {out[gid]!r} (line {first_line[gid]}) and to "
                f"{sym!r} (line {i + 2}); keep one symbol per ID"
            )
        out[gid] = sym
        first_line.setdefault(gid, i + 2)
    log.info("gene map %s: %d IDs, %d with one symbol", path, len(out), sum(map(bool, out.values())))
    return out


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
    n_user_mapped: int = 0
    unrecognised: list[str] = field(default_factory=list)

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
    user_map: Mapping[str, str] | None = None,
    known_symbols: Collection[str] | None = None,
    min_recognised: float = 0.0,
    user_map_source: str = "rna.gene_map",
) -> tuple[np.ndarray, pd.DataFrame, GeneReport]:
    """Map input features (columns of ``values``, samples × features) to unique HGNC symbols.

    ``features`` is positional (one row per column of ``values``) with ``label`` and optional
    ``gene_id``, ``gene_name``, ``gene_type`` columns (empty string = unknown). Returns the
    samples × symbols matrix (columns sorted by symbol, so input row order never matters), the
    var table (index symbol; ``ensembl_id``, ``gene_type``, ``n_collapsed``) and a report.

    ``user_map`` (:func:`load_user_gene_map`) takes precedence for the labels it lists (an empty
    symbol there means "unmapped"). With ``known_symbols``, fewer than ``min_recognised`` of the
    input recognised (see the module docstring) raises :class:`RnaError` naming examples.
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
    in_user = pd.Series(False, index=labels.index)
    if user_map is not None:
        in_user = labels.isin(user_map.keys())
        if not in_user.any():
            raise RnaError(
                f"{user_map_source}: none of its {len(user_map)} IDs (e.g. "
                f"{', '.join(list(user_map)[:3])}) is a gene ID of the RNA input (e.g. "
                f"{', '.join(labels[:3])}); the first column must hold the input's own IDs "
                "exactly (check prefixes such as R's 'X', suffixes and case)"
            )
        report.n_user_mapped = int((in_user & labels.map(lambda g: bool(user_map.get(g)))).sum())

    # Ensembl ID: from the gene_id column, else from a label that is an Ensembl ID.
    raw_id = feats["gene_id"].where(feats["gene_id"] != "", labels.where(labels.map(is_ensembl), ""))
    ens = raw_id.map(lambda g: strip_version(g) if g else "")
    par_y = ens.str.endswith("_PAR_Y")
    report.n_par_y = int(par_y.sum())

    # Symbol: the input's own name, else the map, else a label that is not an Ensembl ID.
    sym = feats["gene_name"].copy()
    if user_map is not None:
        sym[in_user] = labels[in_user].map(user_map)
    from_map = (sym == "") & (ens != "") & ~in_user
    sym[from_map] = ens[from_map].map(gene_map.ensembl_to_symbol).fillna("")
    label_is_symbol = (sym == "") & (ens == "") & ~labels.map(is_ensembl) & ~in_user
    sym[label_is_symbol] = labels[label_is_symbol]
    ens = ens.where(ens != "", sym.map(gene_map.symbol_to_ensembl).fillna(""))

    mapped = (sym != "") & ~par_y
    report.n_mapped = int(mapped.sum())
    report.unmapped = labels[(sym == "") & ~par_y].tolist()
    if known_symbols is not None:
        # The ID *type* is what is checked: an Ensembl ID outside the packaged protein-coding
        # map (a lncRNA) is of the right kind, a label no source knows is not.
        recognised = (labels.map(is_ensembl) | in_user | (feats["gene_name"] != "")
                      | (feats["gene_id"] != "") | labels.isin(set(known_symbols)))
        report.unrecognised = labels[~recognised & ~par_y].tolist()
        _check_recognised(report, min_recognised, user_map is not None, gene_map.source)
    if report.unmapped:
        log.warning(
            "%d of %d genes have no HGNC symbol (none in rna.gene_map, the input annotation or %s) and are "
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
    if duplicate_rule in ("sum", "mean"):
        # A sparse row → symbol indicator: one matrix product sums every duplicate group.
        codes, symbols = pd.factorize(table["symbol"], sort=True)
        indicator = sparse.csr_matrix(
            (np.ones(len(codes)), (table["col"].to_numpy(), codes)),
            shape=(vals.shape[1], len(symbols)),
        )
        out = np.asarray((indicator.T @ vals.T.astype(np.float64)).T)
        if duplicate_rule == "mean":
            out /= np.asarray(indicator.sum(axis=0)).ravel()[None, :]
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


def _check_recognised(report: GeneReport, min_recognised: float, has_user_map: bool,
                      map_source: str) -> None:
    """Stop when too little of the input is recognised (module docstring), naming examples."""
    usable = report.n_input - report.n_par_y
    n_bad = len(report.unrecognised)
    if not usable or n_bad == 0:
        return
    share = 1.0 - n_bad / usable
    examples = ", ".join(report.unrecognised[:8])
    if share >= min_recognised:
        log.warning("%d of %d input genes are not recognised (kept under their own label when "
                    "not empty: %s)", n_bad, usable, examples)
        return
    what = ("neither Ensembl IDs, HGNC symbols known to " + map_source + " or to the gene sets"
            + (", nor given a symbol by rna.gene_map" if has_user_map else ""))
    raise RnaError(
        f"{n_bad} of {usable} input gene IDs ({n_bad / usable:.0%}) are {what} (e.g. {examples}); "
        f"only {share:.0%} recognised, rna.min_mapped_fraction is {min_recognised:g}. If they are "
        "microarray probe or other platform IDs, give rna.gene_map: a CSV/TSV with a header row "
        "and two columns (input ID, HGNC symbol), e.g. the platform's annotation table from GEO"
        + ("; extend the one given to these IDs" if has_user_map else "")
        + ". Symbols of another species need gene sets of that species (rna.gene_sets); to keep "
        "unknown labels as they are, lower rna.min_mapped_fraction"
    )


def _protein_coding(gene_type: pd.Series, sym: pd.Series, gene_map: GeneMap) -> np.ndarray:
    """Protein-coding mask: the input's gene_type where given, else membership of the map."""
    known = gene_type != ""
    in_map = sym.isin(gene_map.symbol_to_ensembl.keys())
    return np.where(known, gene_type == "protein_coding", in_map).astype(bool)
