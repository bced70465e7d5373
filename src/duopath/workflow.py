"""What the Snakemake DAG is made of, computed once at parse time from the validated config.

Why here and not in the Snakefile: the plan (which cohorts, which slides, their mpp overrides)
must be cheap -- no slide is opened while the DAG is built, so ``snakemake -n`` over a
thousand slides takes seconds -- and it must be unit-testable without Snakemake.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd

from duopath import layout
from duopath.cohort import canonicalise_sheet, read_sample_sheet
from duopath.config import DuopathConfig


class Plan:
    """Cohorts and slides of one workflow run."""

    def __init__(self, cfg: DuopathConfig) -> None:
        self.cfg = cfg
        self.output_dir = str(cfg.output_dir)
        unknown = [c for c in cfg.only_cohorts if c not in cfg.cohorts]
        if unknown:
            from duopath.config import ConfigError

            raise ConfigError(
                f"only_cohorts names unknown cohorts {unknown}; configured: {sorted(cfg.cohorts)}"
            )
        self.cohorts = list(cfg.only_cohorts or cfg.cohorts)

    def path(self, pattern: str, **fields: str) -> str:
        return layout.out(self.output_dir, pattern, **fields)

    def is_demo(self, cohort: str) -> bool:
        return self.cfg.cohorts[cohort].demo is not None

    def has_rna(self, cohort: str) -> bool:
        """Demo cohorts always carry RNA; a user cohort when it names an RNA source."""
        c = self.cfg.cohorts[cohort]
        return c.demo is not None or c.rna is not None

    def sheet_source(self, cohort: str) -> str:
        """The file the canonical sheet is made from: the user's sheet or the demo's."""
        c = self.cfg.cohorts[cohort]
        if c.demo is not None:
            return self.path(layout.DEMO_SHEET, cohort=cohort)
        return str(c.sample_sheet)

    @functools.cache  # noqa: B019 - one Plan per workflow run; the cache lives as long as it
    def sheet(self, cohort: str) -> pd.DataFrame:
        """The canonical, validated sample sheet (see :mod:`duopath.cohort`)."""
        c = self.cfg.cohorts[cohort]
        if c.demo is None:
            return read_sample_sheet(c)
        from duopath.demo import plan_demo

        demo_dir = Path(self.path(layout.DEMO_DIR, cohort=cohort))
        raw = plan_demo(c.demo).astype(str)
        return canonicalise_sheet(raw, c, source=self.sheet_source(cohort), slide_dir=demo_dir,
                                  check_files=False)

    def check_folds(self, cohort: str) -> None:
        """``training.folds`` against the cohort's patients, now rather than in its splits job.

        Not done while Snakemake parses: a cohort too small to train may still be segmented
        and embedded (``duopath validate`` runs it).
        """
        from duopath.config import ConfigError
        from duopath.training.splits import MIN_PATIENTS_PER_FOLD

        n = self.sheet(cohort)["patient_id"].nunique()
        folds = self.cfg.training.folds
        if n < MIN_PATIENTS_PER_FOLD * folds:
            most = n // MIN_PATIENTS_PER_FOLD
            fix = (f"lower training.folds to at most {most}" if most >= 2 else
                   f"a cohort needs ≥ {2 * MIN_PATIENTS_PER_FOLD} patients to train")
            raise ConfigError(
                f"cohort {cohort}: {n} patients cannot make training.folds = {folds} folds (need "
                f"≥ {MIN_PATIENTS_PER_FOLD * folds} patients); {fix} ({self.sheet_source(cohort)})"
            )

    def slides(self, cohort: str) -> list[str]:
        """The cohort's slides (rows of RNA-only patients name none)."""
        return [s for s in self.sheet(cohort)["slide_id"].tolist() if s]

    def has_slides(self, cohort: str) -> bool:
        """False for an RNA-only cohort: no segment/tile/embed/summary job is scheduled."""
        return bool(self.slides(cohort))

    @functools.cache  # noqa: B019
    def patient_modalities(self, cohort: str) -> pd.DataFrame:
        """Per patient: has a slide, has RNA (``duopath.modalities.patient_modalities``)."""
        from duopath.modalities import patient_modalities

        return patient_modalities(self.sheet(cohort), has_rna_source=self.has_rna(cohort))

    def external_source(self, cohort: str) -> str | None:
        """The cohort whose models an external test cohort is scored with (None: not external)."""
        return self.cfg.cohorts[cohort].external_of

    def coxnet_models(self, cohort: str) -> tuple[list[str], dict[str, str]]:
        """(["coxnet"] when the penalised Cox baseline runs on ``cohort``, {"coxnet": why not}).

        It needs ``baselines.coxnet``, a survival task and RNA (a configured source and some
        patient with RNA); it reads no slide.
        """
        if not self.cfg.baselines.coxnet or "survival" not in self.cfg.cohorts[cohort].tasks:
            return [], {}
        if not self.has_rna(cohort) and not self.external_source(cohort):
            return [], {"coxnet": "the cohort has no RNA"}
        return self.allowed_models(cohort, ["coxnet"])

    def external_models(self, cohort: str, trained: list[str]) -> list[str]:
        """Of the models ``trained`` on ``cohort``'s source, those an external test cohort (no RNA)
        can be scored with: the ones that read slides only. [] for a cohort that is not external."""
        from duopath.modalities import SLIDE, model_inputs

        if self.external_source(cohort) is None:
            return []
        return [m for m in trained if model_inputs(m) == {SLIDE}]

    def allowed_models(self, cohort: str, models: list[str]) -> tuple[list[str], dict[str, str]]:
        """(models some patient of ``cohort`` can feed, {other model: why}) -- DAG jobs exist for
        the first; the report lists the second with the reason. Nothing is trained on an
        external test cohort."""
        from duopath.modalities import model_inputs, usable_patients

        source = self.external_source(cohort)
        if source is not None:
            return [], {m: f"external test cohort of {source}: not trained on" for m in models}
        run, skipped = [], {}
        mods = self.patient_modalities(cohort)
        for m in models:
            needs = model_inputs(m, missing_rna=self.cfg.teacher.missing_rna)
            if usable_patients(mods, needs)[0]:
                run.append(m)
            else:
                what = " and ".join("RNA" if n == "rna" else "slides" for n in sorted(needs, reverse=True))
                skipped[m] = f"no patient of the cohort has {what}"
        return run, skipped

    @functools.cache  # noqa: B019
    def _slide_index(self, cohort: str) -> dict[str, dict]:
        return {r["slide_id"]: r for r in self.sheet(cohort).to_dict("records")}

    def slide(self, cohort: str, slide: str) -> dict:
        return self._slide_index(cohort)[slide]

    def slide_mpp(self, cohort: str, slide: str) -> float | None:
        mpp = self.slide(cohort, slide)["mpp"]
        return None if mpp is None or pd.isna(mpp) else float(mpp)
