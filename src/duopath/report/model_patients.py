"""The report's "patients per model" table: each model's denominator, why it left patients out, and
whether its comparison with the main model is paired.

Why: in a mixed cohort (some patients with a slide only, some with RNA only) each model is
scored on the patients it can read (``duopath.modalities``), so two models' scores may come from
different test patients. A reader must see that beside the numbers. Read from the fold outputs
themselves -- the test patients of ``predictions.parquet`` and the ``excluded`` map of
``metrics.json`` -- so a failed slide or an RNA sample missing from the matrix is counted too,
not only what the sample sheet declared.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from duopath.report.html_parts import esc, table

if TYPE_CHECKING:  # ReportInputs lives in the page module, which imports this one
    from duopath.report.html import ReportInputs


def _test_patients(runs) -> dict[int, frozenset[str]]:
    return {r.fold: frozenset(map(str, r.predictions["patient_id"])) for r in runs
            if r.predictions is not None}


def _left_out(runs) -> dict[str, str]:
    """Patient -> reason, over every fold (each fold's map covers the whole cohort)."""
    out: dict[str, str] = {}
    for r in runs:
        for pid, why in dict(r.info.get("excluded") or {}).items():
            out.setdefault(str(pid), str(why))
    return out


def model_patients_table(inp: ReportInputs, task: str) -> str:
    """One row per model of ``task``: test patients scored, left out (by reason), paired or not."""
    by_model = inp.runs.get(task, {})
    if not by_model:
        return ""
    ref = inp.reference
    ref_tests = _test_patients(by_model.get(ref, []))
    rows, unpaired = [], 0
    for model, runs in by_model.items():
        tests = _test_patients(runs)
        n_scored = sum(len(p) for p in tests.values())
        reasons = Counter(_left_out(runs).values())
        left = "; ".join(f"{esc(why)}: {n}" for why, n in sorted(reasons.items())) or "none"
        if model == ref:
            pairing = "reference"
        elif tests and tests == {k: v for k, v in ref_tests.items() if k in tests}:
            pairing = "paired: the same test patients"
        else:
            shared = sum(len(v & ref_tests.get(k, frozenset())) for k, v in tests.items())
            pairing = f"<b>not paired</b>: {shared} of its {n_scored} test patients are {esc(ref)}'s"
            unpaired += 1
        rows.append((esc(model), str(n_scored), left, pairing))
    note = ""
    if unpaired:
        note = (f'<p class="muted">{unpaired} model(s) read other modalities than {esc(ref)} and were '
                "scored on other patients (e.g. RNA-only models on patients without a slide); their "
                "fold-level comparisons with it mix different test sets: read them as unpaired.</p>")
    return ("<h3>Patients per model</h3>"
            + table(["model", "test patients scored (all folds)", "left out (why)",
                     f"vs {esc(ref)}"], rows, left=4)
            + note)
