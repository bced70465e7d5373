"""GSE7390 as a real RNA-only cohort on disk: expression matrix, sample sheet, probe map, gene sets.

Why this cohort: ``sksurv.datasets.load_breast_cancer()`` ships it with scikit-survival (already a
dependency), so tests and the bench get *real* processed microarray data offline: 198
breast-cancer patients, 51 distant-metastasis events, 76 Affymetrix HG-U133A probe sets of the
Wang et al. (Lancet 2005) signature, already log2-scale (``rna.value_type: log``). The clinical
covariates (age, ER, grade, size) are not written: this is the RNA-only path.

What is a stand-in, stated plainly: the probe sets' gene symbols are not available offline (the
platform annotation, GEO GPL96, is not shipped), so :func:`write_gse7390` writes a probe map
that gives each probe set its platform ID without R's ``X`` prefix as its "symbol"
(``X200726_at`` → ``200726_at``). It exercises the user-map mechanism (``rna.gene_map``) on real
probe IDs; a user with GPL96 would give the real probe → symbol table instead. For the same
reason there are no Hallmark genes here: the gene-set file puts every probe in one tumour set and
one TME set (``rna.group_overlap: both``), so the RNA-only models read all 76 probes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from duopath.io import write_text

T_SET, E_SET = "GSE7390_ALL_PROBES_T", "GSE7390_ALL_PROBES_E"


@dataclass(frozen=True)
class Gse7390Files:
    """Paths written by :func:`write_gse7390` and the ``rna:`` settings that read them."""

    expression: Path  # genes × samples TSV, probe IDs as scikit-survival names them (X...)
    sheet: Path  # canonical-style sheet: patient_id, rna_sample_id, site, label, time, event
    probe_map: Path  # probe_id -> gene (stand-in symbols, see the module docstring)
    gene_sets: Path  # GMT: every probe in T_SET and in E_SET
    patients: pd.DataFrame  # patient_id, time, event (one row per patient)

    def rna_settings(self, **overrides) -> dict:
        """The ``rna:`` section for this cohort (log2 values, probe map, all-probe groups)."""
        return {
            "value_type": "log",
            "gene_map": str(self.probe_map),
            "gene_sets": [str(self.gene_sets)],
            "tumour_sets": [T_SET],
            "tme_sets": [E_SET],
            "group_overlap": "both",
            "groups_from_hvg": False,
            **overrides,
        }


def load_gse7390() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(expression: patients × probes, log2; outcome: time in days, event 0/1), patients P000..."""
    from sksurv.datasets import load_breast_cancer

    x, y = load_breast_cancer()
    probes = [c for c in x.columns if c.startswith("X") and c.endswith("_at")]
    ids = [f"P{i:03d}" for i in range(len(x))]
    expr = pd.DataFrame(x[probes].to_numpy(float), index=pd.Index(ids, name="patient_id"),
                        columns=probes)
    outcome = pd.DataFrame({"time": y["t.tdm"].astype(float), "event": y["e.tdm"].astype(int)},
                           index=expr.index)
    return expr, outcome


def write_gse7390(root: Path | str, *, slide_column: bool = False) -> Gse7390Files:
    """Write the cohort's files into ``root`` (see :class:`Gse7390Files`).

    ``slide_column``: add ``slide_id`` / ``slide_path`` (``<patient>-S``) for code that still
    needs one slide per row (the trainer before RNA-only cohorts are wired).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    expr, outcome = load_gse7390()
    samples = [f"{p}-A" for p in expr.index]  # array IDs differ from patient IDs, as in GEO
    matrix = pd.DataFrame(expr.T.to_numpy(), index=pd.Index(expr.columns, name="probe_id"),
                          columns=samples)
    expression = root / "expression.tsv"
    write_text(expression, matrix.to_csv(sep="\t", float_format="%.6f"))
    sheet = pd.DataFrame({
        "patient_id": expr.index,
        "rna_sample_id": samples,
        "site": "",
        "label": np.where(outcome["event"] == 1, "metastasis", "none"),
        "time": outcome["time"].to_numpy(),
        "event": outcome["event"].to_numpy(),
    })
    if slide_column:
        sheet.insert(1, "slide_id", [f"{p}-S" for p in expr.index])
        sheet.insert(2, "slide_path", [f"{p}-S.svs" for p in expr.index])
    sheet_path = root / "samples.csv"
    write_text(sheet_path, sheet.to_csv(index=False))
    probe_map = root / "probe_map.tsv"
    write_text(probe_map, pd.DataFrame({"probe_id": expr.columns,
                                        "gene": [c.removeprefix("X") for c in expr.columns]})
               .to_csv(sep="\t", index=False))
    genes = "\t".join(c.removeprefix("X") for c in expr.columns)
    gene_sets = root / "gene_sets.gmt"
    write_text(gene_sets, f"{T_SET}\tall probes\t{genes}\n{E_SET}\tall probes\t{genes}\n")
    return Gse7390Files(expression, sheet_path, probe_map, gene_sets,
                        outcome.reset_index())


def main(argv: list[str] | None = None) -> None:
    """``python -m duopath.demo.gse7390 DIR``: write the cohort's files into DIR (default
    ``data/gse7390``), the paths ``examples/gse7390.yaml`` reads."""
    import argparse
    import logging

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("root", nargs="?", default="data/gse7390", type=Path)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    files = write_gse7390(args.root)
    logging.getLogger(__name__).info(
        "GSE7390: %d patients (%d events) written to %s: %s, %s, %s, %s", len(files.patients),
        int(files.patients["event"].sum()), args.root, files.sheet.name, files.expression.name,
        files.probe_map.name, files.gene_sets.name)


if __name__ == "__main__":
    main()
