"""Simulated RNA-seq raw counts with a planted tumour and TME programme.

Why real gene symbols and real Hallmark programmes: the RNA stage builds its tumour / TME gene
groups from the Hallmark GMT shipped in ``duopath/data/genesets``; if the demo planted its
signal in made-up genes, that stage could not be exercised end to end. Genes of the tumour
programme sets rise with the tumour factor ``t``, genes of the TME sets with the TME factor
``e`` (only a random part of each set, with varying strength, as in real data); every other
gene is noise. Counts are negative binomial (gamma-Poisson) with per-sample library size, a
mild per-site batch shift, and gene-specific dispersion.
"""

from __future__ import annotations

import functools
import logging
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from duopath.config import TME_SETS, TUMOUR_SETS, DemoConfig
from duopath.demo.truth import STREAM_RNA, stream

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

log = logging.getLogger(__name__)

HALLMARK_GMT = "h.all.v2024.1.Hs.symbols.gmt"
GENCODE_MAP = "gencode.v31.annotation.gene_l1l2.pc_TRC_IGC.stripped.txt"

#: The "core" sets carry the signal in most of their genes; the others in a minority.
CORE_SETS: frozenset[str] = frozenset(
    {
        "HALLMARK_E2F_TARGETS",
        "HALLMARK_G2M_CHECKPOINT",
        "HALLMARK_MYC_TARGETS_V1",
        "HALLMARK_INFLAMMATORY_RESPONSE",
        "HALLMARK_INTERFERON_GAMMA_RESPONSE",
        "HALLMARK_ALLOGRAFT_REJECTION",
        "HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION",
    }
)
ACTIVE_CORE = 0.8  # probability that a core-set gene carries the signal
ACTIVE_OTHER = 0.35
LOADING_RANGE = (0.2, 0.6)  # log fold change per SD of the factor, for an active gene
PROGRAMME_FRACTION = 0.6  # at most this share of n_genes comes from the programme sets
BATCH_SD = 0.15  # per site x gene log shift: mild, but a site-aware split should notice it
LIBRARY_SD = 0.35


def _genesets_dir() -> Traversable:
    return resources.files("duopath") / "data" / "genesets"


@functools.lru_cache(maxsize=1)
def hallmark_sets() -> dict[str, tuple[str, ...]]:
    """The MSigDB Hallmark collection shipped as package data: set name -> gene symbols."""
    sets: dict[str, tuple[str, ...]] = {}
    for line in (_genesets_dir() / HALLMARK_GMT).read_text().splitlines():
        fields = line.rstrip("\n").split("\t")
        if len(fields) > 2:
            sets[fields[0]] = tuple(g for g in fields[2:] if g)
    return sets


@functools.lru_cache(maxsize=1)
def protein_coding_symbols() -> tuple[str, ...]:
    """Unique HGNC symbols of GENCODE v31 protein-coding genes (order of the file)."""
    seen: dict[str, None] = {}
    for line in (_genesets_dir() / GENCODE_MAP).read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[1]:
            seen.setdefault(parts[1].strip(), None)
    return tuple(seen)


def max_genes() -> int:
    """How many distinct real symbols the demo can draw from."""
    hallmark = {g for genes in hallmark_sets().values() for g in genes}
    return len(hallmark | set(protein_coding_symbols()))


def _union(names: tuple[str, ...]) -> set[str]:
    sets = hallmark_sets()
    return {g for n in names for g in sets[n]}


def gene_truth(cfg: DemoConfig) -> pd.DataFrame:
    """The simulated genes and their planted loadings on ``t`` and ``e``.

    Returns one row per gene (sorted by symbol): ``gene``, ``programme`` (tumour / tme / both /
    none, by Hallmark membership), ``loading_t``, ``loading_e`` (0 for inactive genes),
    ``log_mean`` and ``dispersion``.
    """
    available = max_genes()
    if cfg.n_genes > available:
        raise ValueError(
            f"demo.n_genes = {cfg.n_genes}, but only {available} distinct real gene symbols ship "
            "with duopath (Hallmark + GENCODE v31 protein-coding); use a smaller n_genes"
        )
    rng = stream(cfg, STREAM_RNA, 0)
    tumour, tme = _union(TUMOUR_SETS), _union(TME_SETS)
    programme = sorted(tumour | tme)
    n_prog = min(len(programme), int(PROGRAMME_FRACTION * cfg.n_genes))
    chosen = list(rng.choice(programme, size=n_prog, replace=False))
    # Noise genes: the other Hallmark genes first (so every Hallmark set is partly present, as
    # in real data), then other protein-coding symbols.
    hallmark_rest = sorted({g for gs in hallmark_sets().values() for g in gs} - set(programme))
    coding_rest = sorted(set(protein_coding_symbols()) - set(programme) - set(hallmark_rest))
    n_rest = cfg.n_genes - n_prog
    take_h = min(len(hallmark_rest), n_rest // 2)
    chosen += list(rng.choice(hallmark_rest, size=take_h, replace=False))
    chosen += list(rng.choice(coding_rest, size=n_rest - take_h, replace=False))
    genes = np.array(sorted(chosen))

    core_t, core_e = (
        _union(tuple(s for s in TUMOUR_SETS if s in CORE_SETS)),
        _union(tuple(s for s in TME_SETS if s in CORE_SETS)),
    )
    in_t = np.isin(genes, list(tumour))
    in_e = np.isin(genes, list(tme))
    p_t = np.where(np.isin(genes, list(core_t)), ACTIVE_CORE, ACTIVE_OTHER) * in_t
    p_e = np.where(np.isin(genes, list(core_e)), ACTIVE_CORE, ACTIVE_OTHER) * in_e
    n = len(genes)
    loading_t = (rng.uniform(size=n) < p_t) * rng.uniform(*LOADING_RANGE, size=n)
    loading_e = (rng.uniform(size=n) < p_e) * rng.uniform(*LOADING_RANGE, size=n)
    programme_label = np.select([in_t & in_e, in_t, in_e], ["both", "tumour", "tme"], "none")
    return pd.DataFrame(
        {
            "gene": genes,
            "programme": programme_label,
            "loading_t": loading_t,
            "loading_e": loading_e,
            "log_mean": np.clip(rng.normal(5.0, 1.5, size=n), 0.0, 11.0),
            "dispersion": np.exp(rng.normal(np.log(0.15), 0.5, size=n)),
        }
    )


def simulate_counts(cfg: DemoConfig, patients: pd.DataFrame, genes: pd.DataFrame) -> pd.DataFrame:
    """Raw integer counts, genes x RNA samples; first column ``gene``.

    Only patients with a non-empty ``rna_sample_id`` get a column (the others are the
    deliberate missing-modality cases).
    """
    has_rna = patients[patients["rna_sample_id"] != ""]
    rng = stream(cfg, STREAM_RNA, 1)
    n_sites = cfg.n_sites
    batch = rng.normal(0.0, BATCH_SD, size=(n_sites, len(genes)))
    site_idx = has_rna["site"].str.slice(1).astype(int).to_numpy() - 1
    library = rng.normal(0.0, LIBRARY_SD, size=len(has_rna))

    t = has_rna["tumour_factor"].to_numpy()
    e = has_rna["tme_factor"].to_numpy()
    log_mu = (
        genes["log_mean"].to_numpy()[None, :]
        + library[:, None]
        + batch[site_idx]
        + t[:, None] * genes["loading_t"].to_numpy()[None, :]
        + e[:, None] * genes["loading_e"].to_numpy()[None, :]
    )
    phi = genes["dispersion"].to_numpy()[None, :]
    lam = rng.gamma(shape=1.0 / phi, scale=np.exp(log_mu) * phi)
    counts = rng.poisson(lam).astype(np.int64)  # samples x genes

    table = pd.DataFrame(counts.T, columns=has_rna["rna_sample_id"].tolist())
    table.insert(0, "gene", genes["gene"].to_numpy())
    log.debug("simulated %d genes x %d RNA samples", *counts.T.shape)
    return table
