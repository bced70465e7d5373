"""Gene sets (GMT / CSV / TSV) and the tumour (T) / microenvironment (E) gene groups.

Why two groups: the model encodes tumour-intrinsic and microenvironment programmes in separate
subspaces (DESIGN.md, "Model"). The groups are unions of named gene sets:

- **Packaged**: ``hallmark`` = MSigDB Hallmarks v2024.1 (HGNC symbols, CC BY 4.0; Liberzon et
  al., Cell Systems 2015). Default T group: E2F targets, G2M checkpoint, MYC targets v1/v2,
  mitotic spindle, DNA repair, glycolysis, mTORC1, unfolded protein response. Default E group:
  inflammatory response, IFN-γ/IFN-α response, IL2-STAT5, IL6-JAK-STAT3, allograft rejection,
  complement, TNF-α via NF-κB, EMT, angiogenesis, coagulation.
- **User files** (not shipped, for licence reasons): ESTIMATE ``SI_geneset.gmt``, MCAT
  ``signatures.csv``, CIBERSORT ``LM22.txt``, SurvPath ``combine_comps.csv``... Accepted forms:
  GMT (``name<TAB>description<TAB>gene...``); a table whose columns are sets listing genes
  (MCAT/SurvPath signatures); a gene × set table with a first gene column and 0/1 membership
  (SurvPath comps); a gene × cell-type signature matrix with expression values (LM22), where a
  gene joins the set of the column in which it is highest (the usual marker assignment).

A gene in both groups is dropped by default (``rna.group_overlap``), so the two encoders do
not start from shared inputs.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from duopath.rna import RnaError

log = logging.getLogger(__name__)

HALLMARK = "hallmark"
HALLMARK_FILE = "h.all.v2024.1.Hs.symbols.gmt"
HALLMARK_CITATION = (
    "MSigDB Hallmark gene sets v2024.1 (CC BY 4.0): Liberzon et al., The Molecular Signatures "
    "Database Hallmark Gene Set Collection, Cell Systems 2015"
)


@dataclass(frozen=True)
class GeneSet:
    """A named gene set and where it came from (a file name or ``hallmark``)."""

    name: str
    genes: tuple[str, ...]
    source: str


@dataclass
class Groups:
    """The T and E gene groups (genes present in the data) and the per-set bookkeeping."""

    tumour: list[str]
    tme: list[str]
    overlap: list[str]
    table: pd.DataFrame  # one row per set: name, source, group, n_genes, n_present, scored


def read_gmt(path: Path | str, *, source: str | None = None) -> list[GeneSet]:
    """GMT: one set per line, ``name<TAB>description<TAB>gene<TAB>gene...`` (CRLF tolerated)."""
    path = Path(path)
    source = source or path.name
    sets, seen = [], set()
    with path.open(encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            fields = [f.strip() for f in line.rstrip("\r\n").split("\t")]
            if not any(fields):
                continue
            if len(fields) < 3 or not fields[0]:
                raise RnaError(
                    f"{path}, line {lineno}: a GMT line is name<TAB>description<TAB>genes... "
                    f"(got {len(fields)} tab-separated field(s)); is this file tab-separated?"
                )
            name = fields[0]
            if name in seen:
                raise RnaError(f"{path}, line {lineno}: gene set {name} appears twice")
            seen.add(name)
            genes = tuple(dict.fromkeys(g for g in fields[2:] if g))
            if not genes:
                raise RnaError(f"{path}, line {lineno}: gene set {name} lists no gene")
            sets.append(GeneSet(name=name, genes=genes, source=source))
    if not sets:
        raise RnaError(f"{path}: no gene set in this GMT file")
    return sets


def read_gene_table(path: Path | str, *, source: str | None = None) -> list[GeneSet]:
    """CSV/TSV gene sets in one of the three table forms described in the module docstring."""
    path = Path(path)
    source = source or path.name
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    try:
        table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise RnaError(f"{path}: cannot parse gene-set table: {err}") from None
    table.columns = [str(c).strip() for c in table.columns]
    if table.empty or table.shape[1] < 1:
        raise RnaError(f"{path}: empty gene-set table")
    dups = table.columns[table.columns.duplicated()].tolist()
    if dups:
        raise RnaError(f"{path}: duplicated gene-set columns {dups}")
    body = table.iloc[:, 1:].apply(lambda c: c.str.strip())
    numeric = body.apply(pd.to_numeric, errors="coerce")
    is_matrix = table.shape[1] >= 2 and bool((numeric.notna() | (body == "")).all().all()) and \
        bool(numeric.notna().any().any())
    sets = []
    if is_matrix:
        genes = table.iloc[:, 0].str.strip()
        values = numeric.fillna(0.0).to_numpy()
        if np.isin(values, (0.0, 1.0)).all():
            form = "gene × set 0/1 membership"
            members = {c: genes[values[:, j] == 1].tolist() for j, c in enumerate(body.columns)}
        else:
            form = "gene × set signature matrix (each gene to its highest column)"
            best = values.argmax(axis=1)
            members = {c: genes[best == j].tolist() for j, c in enumerate(body.columns)}
    else:
        form = "one column of genes per set"
        members = {c: [g.strip() for g in table[c] if g.strip()] for c in table.columns}
    for name, genes in members.items():
        genes = tuple(dict.fromkeys(g for g in genes if g))
        if genes:
            sets.append(GeneSet(name=name, genes=genes, source=source))
        else:
            log.warning("%s: gene set %s has no gene and is ignored", path, name)
    if not sets:
        raise RnaError(f"{path}: no gene set with genes in this table ({form})")
    log.info("%s: %d gene sets read as %s", path, len(sets), form)
    return sets


def load_gene_sets(sources: list[str]) -> list[GeneSet]:
    """All sets of the configured sources; a set name defined twice is an error."""
    out: list[GeneSet] = []
    where: dict[str, str] = {}
    for src in sources:
        if src == HALLMARK:
            ref = resources.files("duopath") / "data" / "genesets" / HALLMARK_FILE
            with resources.as_file(ref) as path:
                sets = read_gmt(path, source=HALLMARK)
        elif Path(src).suffix.lower() == ".gmt":
            sets = read_gmt(src)
        else:
            sets = read_gene_table(src)
        for gs in sets:
            if gs.name in where:
                raise RnaError(
                    f"gene set {gs.name} is defined in both {where[gs.name]} and {src}; "
                    "list each source once in rna.gene_sets (or rename the set)"
                )
            where[gs.name] = src
        out.extend(sets)
    return out


def build_groups(
    sets: list[GeneSet],
    genes_present: pd.Index,
    *,
    tumour_sets: list[str],
    tme_sets: list[str],
    overlap: str,
    min_set_genes: int,
    hvg: pd.Index | None = None,
) -> Groups:
    """Resolve the T/E sets by name, restrict them to genes in the data, build the groups.

    Errors: a configured set name that no source defines (with close matches), a gene-set source
    none of whose genes is in the data (wrong ID type or species), and an empty group. ``hvg``,
    when given, restricts the groups (not the pathway scores) to highly variable genes.
    """
    by_name = {gs.name: gs for gs in sets}
    for key, names in (("tumour_sets", tumour_sets), ("tme_sets", tme_sets)):
        for name in names:
            if name not in by_name:
                close = difflib.get_close_matches(name, list(by_name), n=3)
                raise RnaError(
                    f"rna.{key}: gene set {name} is in none of the gene-set sources "
                    f"({', '.join(sorted({gs.source for gs in sets}))})"
                    + (f"; did you mean {', '.join(close)}?" if close else "")
                )
    present = set(genes_present)
    for src in dict.fromkeys(gs.source for gs in sets):
        members = {g for gs in sets if gs.source == src for g in gs.genes}
        if not members & present:
            raise RnaError(
                f"gene-set source {src}: none of its {len(members)} genes (e.g. "
                f"{', '.join(sorted(members)[:3])}) is in the RNA data (e.g. "
                f"{', '.join(list(genes_present[:3]))}); gene sets must use HGNC symbols of the "
                "same species as the data"
            )
    group_of = {n: "T" for n in tumour_sets} | {n: "E" for n in tme_sets}
    rows = []
    for gs in sets:
        n_present = sum(g in present for g in gs.genes)
        rows.append({"name": gs.name, "source": gs.source, "group": group_of.get(gs.name, ""),
                     "n_genes": len(gs.genes), "n_present": n_present,
                     "scored": n_present >= min_set_genes})
    table = pd.DataFrame(rows)
    few = table[~table["scored"]]
    if len(few):
        log.warning("%d gene sets have fewer than %d genes in the data and are not scored: %s",
                    len(few), min_set_genes, ", ".join(few["name"][:10]))

    def union(names: list[str]) -> set[str]:
        return {g for n in names for g in by_name[n].genes if g in present}

    t, e = union(tumour_sets), union(tme_sets)
    both = t & e
    if overlap == "drop":
        t, e = t - both, e - both
    elif overlap == "tumour":
        e = e - both
    elif overlap == "tme":
        t = t - both
    elif overlap != "both":
        raise ValueError(f"unknown group_overlap {overlap!r}")
    if both:
        log.info("%d genes are in both a tumour and a TME set; group_overlap=%r", len(both),
                 overlap)
    if hvg is not None:
        keep = set(hvg)
        t, e = t & keep, e & keep
    for label, group, key in (("tumour (T)", t, "tumour_sets"), ("TME (E)", e, "tme_sets")):
        if not group:
            raise RnaError(
                f"the {label} gene group is empty: none of the genes of rna.{key} is in the data"
                + (" among the highly variable genes (set rna.groups_from_hvg: false or raise "
                   "rna.hvg_fraction)" if hvg is not None else "")
            )
    return Groups(tumour=sorted(t), tme=sorted(e), overlap=sorted(both), table=table)
