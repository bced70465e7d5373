"""What the Snakemake DAG is made of, computed once at parse time from the validated config.

Why here and not in the Snakefile: the plan (which cohorts, which slides, their mpp overrides,
and which models, tasks and folds each cohort trains and reports) must be cheap -- no slide is
opened while the DAG is built, so ``snakemake -n`` over a thousand slides takes seconds -- and
it must be unit-testable without Snakemake. The rule files only *read* the plan: none of them
defines a model list another one needs, so the order of the ``include:`` lines does not matter.
Input functions (wildcards -> paths/arguments) are in :mod:`duopath.workflow_inputs`.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import pandas as pd

from duopath import layout
from duopath.cohort import canonicalise_sheet, read_sample_sheet
from duopath.config import ConfigError, DuopathConfig
from duopath.layout import TASKS
from duopath.training.variants import (
    BASE_MODEL,
    STUDENT_MODELS,
    baseline_names,
    model_names,
    student_model_names,
    variant_config,
)

__all__ = ["HEATMAP_MODELS", "STUDENT_MODELS", "TASKS", "Plan"]

# Models whose folds get attention/importance heatmaps (duopath.report.fold_heatmaps).
HEATMAP_MODELS: tuple[str, ...] = (BASE_MODEL, "student")


class Plan:
    """Cohorts, slides, models, tasks and folds of one workflow run."""

    def __init__(self, cfg: DuopathConfig) -> None:
        self.cfg = cfg
        self.output_dir = str(cfg.output_dir)
        unknown = [c for c in cfg.only_cohorts if c not in cfg.cohorts]
        if unknown:
            raise ConfigError(
                f"only_cohorts names unknown cohorts {unknown}; configured: {sorted(cfg.cohorts)}"
            )
        self.cohorts = list(cfg.only_cohorts or cfg.cohorts)
        self.encoder = cfg.encoder.name
        self.magnifications = list(cfg.tiling.magnifications)
        self.folds = [str(k) for k in range(cfg.training.folds)]
        self.teacher_models = model_names(cfg.teacher)
        for model in self.teacher_models:  # a bad ablation fails at parse time, naming the key
            try:
                variant_config(cfg.teacher, model, self.magnifications)
            except ValueError as err:
                raise ConfigError(f"config.yaml, teacher.ablations: {err}") from None
        self.student_models = student_model_names(cfg.student)  # + opt-in student.ablations
        # the validated config's hash: the report shows it (provenance)
        self.config_hash = hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()[:12]

    # ------------------------------------------------------------------ paths

    def path(self, pattern: str, **fields: str) -> str:
        return layout.out(self.output_dir, pattern, **fields)

    def features_dir(self, cohort: str) -> str:
        """The folder of the cohort's ``{slide}.zarr`` stores."""
        return str(Path(self.path(layout.FEATURES, cohort=cohort, encoder=self.encoder, slide="_")).parent)

    def benchmark(self, stage: str, job: str, **fields: str) -> str:
        """The benchmark TSV of one job of ``stage`` (``job``: its wildcards as a sub-path)."""
        return self.path(layout.BENCHMARK, stage=stage, job=job, **fields)

    # ------------------------------------------------------------------ cohorts and slides

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

    def rna_source(self, cohort: str) -> str:
        """The cohort's RNA input: the demo's counts, or the configured file/folder."""
        c = self.cfg.cohorts[cohort]
        if c.demo is not None:
            return self.path(layout.DEMO_RNA, cohort=cohort)
        if c.rna is None:
            raise ConfigError(f"cohort {cohort!r} has no `rna:` source")
        return str(c.rna)

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

    def slide_batches(self, cohort: str, per_job: int) -> list[list[str]]:
        """The cohort's slides cut into the jobs of a batched WSI stage (``duopath.batches``)."""
        from duopath.batches import slide_batches

        return slide_batches(self.slides(cohort), per_job)

    def prep_files(self, cohort: str, slide: str) -> dict[str, str]:
        """What segment + tile write for one slide, by ``duopath.batches.PREP_OUTPUTS`` name."""
        patterns = {"mask": layout.MASK_PNG, "meta": layout.MASK_JSON, "qc": layout.MASK_QC,
                    "tiles": layout.TILES, "tiles_qc": layout.TILES_QC}
        return {name: self.path(pattern, cohort=cohort, slide=slide) for name, pattern in patterns.items()}

    # ------------------------------------------------------------------ models, tasks, folds

    def tasks(self, cohort: str) -> list[str]:
        return list(self.cfg.cohorts[cohort].tasks)

    def has_teacher(self, cohort: str) -> bool:
        """The teacher (and so the students distilled from it) needs RNA."""
        return self.has_rna(cohort)

    def teachers(self, cohort: str) -> list[str]:
        """``teacher`` and its ablations, when the cohort has RNA and some patient can feed them."""
        return self.allowed_models(cohort, list(self.teacher_models))[0] if self.has_teacher(cohort) else []

    def students(self, cohort: str) -> list[str]:
        """The students (and their configured ablations), when there is a teacher to distil from
        and some patient has a slide."""
        if not self.teachers(cohort):
            return []
        return self.allowed_models(cohort, list(self.student_models))[0]

    def baselines(self, cohort: str) -> list[str]:
        """The configured baselines the cohort's data allows."""
        run = baseline_names(self.cfg.baselines, has_rna=self.has_rna(cohort))[0]
        return self.allowed_models(cohort, run)[0]

    def heatmap_models(self, cohort: str) -> list[str]:
        return [m for m in HEATMAP_MODELS if m in self.teachers(cohort) + self.students(cohort)]

    def report_models(self, cohort: str) -> list[str]:
        """Models compared in the cohort's report, the MAIN model first.

        The main model is the reference of every paired comparison (``<main>_*`` models form the
        ablation table): the teacher and its ablations, the students, the baselines, then CoxNet.
        A cohort without RNA has no teacher: its main model is its first baseline.
        """
        return (self.teachers(cohort) + self.students(cohort) + self.baselines(cohort)
                + self.coxnet_models(cohort)[0])

    def skipped_models(self, cohort: str) -> dict[str, str]:
        """Configured models the cohort's data does not allow -> why (shown in the report)."""
        run, why = baseline_names(self.cfg.baselines, has_rna=self.has_rna(cohort))
        why = dict(why)
        why.update(self.allowed_models(cohort, run)[1])
        why.update(self.coxnet_models(cohort)[1])
        if not self.has_teacher(cohort):
            why.update({m: "the cohort has no RNA" for m in self.teacher_models + self.student_models})
        else:
            why.update(self.allowed_models(cohort, self.teacher_models + self.student_models)[1])
        return why

    def fold_paths(self, cohort: str, pattern: str, models: list[str]) -> list[str]:
        """``pattern`` (a per-fold result path) for every task of ``cohort``, model that has the
        task (CoxNet: survival only) and fold."""
        from duopath.modalities import model_has_task

        return [
            self.path(pattern, cohort=cohort, task=t, model=m, fold=k)
            for t in self.tasks(cohort)
            for m in models
            if model_has_task(m, t)
            for k in self.folds
        ]

    # ------------------------------------------------------------------ targets

    def targets(self, cohort: str) -> list[str]:
        """Every final output of ``cohort`` (what `rule all` asks for).

        The WSI summary and contact sheet only for a cohort with slides; splits and RNA only for
        a cohort that trains (not an external test cohort, whose page is its external report).
        """
        out = []
        if self.has_slides(cohort):
            out += [self.path(layout.WSI_SUMMARY, cohort=cohort),
                    self.path(layout.QC_CONTACT_SHEET, cohort=cohort)]
        if self.external_source(cohort) is None:
            out.append(self.path(layout.SPLITS, cohort=cohort))
            if self.has_rna(cohort):
                out.append(self.path(layout.RNA_H5AD, cohort=cohort))
        out += self.fold_paths(cohort, layout.METRICS, self.report_models(cohort))
        if self.report_models(cohort) or self.external_trained_models(cohort):
            out.append(self.path(layout.REPORT, cohort=cohort))
        return out

    def each_fold(self, pattern: str, **fields: str) -> list[str]:
        """``pattern`` (a per-fold result path) for every fold, other wildcards kept: the outputs
        (and a student's teacher inputs) of a training job, which trains all folds of a (cohort,
        task, model) in one process (duopath.training.run.run_folds_files)."""
        return [self.path(pattern, fold=k, **fields) for k in self.folds]

    def external_trained_models(self, cohort: str) -> list[str]:
        """The source's trained models an external test cohort is scored with ([]: not external)."""
        source = self.external_source(cohort)
        if source is None:
            return []
        return self.external_models(cohort, self.students(source) + self.baselines(source))

    def heatmap_dirs(self, cohort: str) -> list[str]:
        """The heatmaps folders the report of ``cohort`` waits for."""
        return self.fold_paths(cohort, layout.HEATMAPS_DIR, self.heatmap_models(cohort))
