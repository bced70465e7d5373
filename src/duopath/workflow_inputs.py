"""Snakemake input and params functions of the rules, as methods reading one :class:`Plan`.

Why a class and not functions in the ``.smk`` files: the rules stay declarations (inputs,
outputs, resources, one shell line), every question about the cohort is answered by the plan,
and these functions are unit-tested without Snakemake. Snakemake calls each method with the
job's ``wildcards`` (and ``input`` where the signature asks for it). Every path that goes into
a shell command is quoted here (``shlex.quote``), as the rules quote theirs with ``:q``.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from duopath import layout
from duopath.modalities import RNA, SLIDE, model_inputs
from duopath.workflow import Plan


class RuleInputs:
    """Wildcards -> inputs and arguments of the workflow's rules."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.cfg = plan.cfg

    # ------------------------------------------------------------------ slides

    def slide_file(self, wildcards: Any) -> str:
        """The slide of {cohort}/{slide}: the user's file, or the demo generator's output."""
        return str(self.plan.slide(wildcards.cohort, wildcards.slide)["slide_path"])

    def mpp_arg(self, wildcards: Any) -> str:
        """``--mpp X`` when the sample sheet overrides the slide's µm/px, else nothing."""
        mpp = self.plan.slide_mpp(wildcards.cohort, wildcards.slide)
        return "" if mpp is None else f"--mpp {mpp}"

    def cohort_slides(self, pattern: str) -> Callable[[Any], list[str]]:
        """Input function: ``pattern`` filled for every slide of {cohort}."""

        def _inputs(wildcards: Any) -> list[str]:
            return [
                self.plan.path(pattern, cohort=wildcards.cohort, slide=s, encoder=self.plan.encoder)
                for s in self.plan.slides(wildcards.cohort)
            ]

        return _inputs

    def model_features(self, wildcards: Any) -> list[str]:
        """Every slide's feature store for a {model} that reads slides; none for one that does not
        (an RNA-only cohort has no slides, and in a mixed one the SNN must not wait for them)."""
        if SLIDE not in model_inputs(wildcards.model):
            return []
        return self.cohort_slides(layout.FEATURES)(wildcards)

    def features_dir(self, wildcards: Any) -> str:
        """The folder of the cohort's {slide}.zarr stores (the stores themselves are inputs)."""
        return self.plan.features_dir(wildcards.cohort)

    def embed_batch_args(self, cohort: str, slides: list[str]) -> str:
        """The per-slide arguments of a batched ``duopath embed`` job (rules/embed.smk)."""
        from duopath.batches import embed_args

        plan = self.plan
        return embed_args(
            slides,
            slide_path=lambda s: str(plan.slide(cohort, s)["slide_path"]),
            tiles=lambda s: plan.path(layout.TILES, cohort=cohort, slide=s),
            store=lambda s: plan.path(layout.FEATURES, cohort=cohort, encoder=plan.encoder, slide=s),
            mpp=lambda s: plan.slide_mpp(cohort, s),
        )

    def wsi_prep_batch_args(self, cohort: str, slides: list[str]) -> str:
        """The per-slide arguments of a batched ``duopath wsi-prep`` job (rules/wsi_prep.smk)."""
        from duopath.batches import wsi_prep_args

        plan = self.plan
        return wsi_prep_args(
            slides,
            slide_path=lambda s: str(plan.slide(cohort, s)["slide_path"]),
            outputs=lambda s: plan.prep_files(cohort, s),
            mpp=lambda s: plan.slide_mpp(cohort, s),
        )

    @staticmethod
    def summary_args(wildcards: Any, input: Any) -> str:
        """``--mask-meta M --tiles T --features F`` per slide, quoted, in the sheet's order."""
        return " ".join(
            f"--mask-meta {shlex.quote(m)} --tiles {shlex.quote(t)} --features {shlex.quote(f)}"
            for m, t, f in zip(input.meta, input.tiles, input.features, strict=True)
        )

    @staticmethod
    def contact_sheet_args(wildcards: Any, input: Any) -> str:
        """``--image QC`` per slide, quoted, in the sheet's order (the wsi summary's)."""
        return " ".join(f"--image {shlex.quote(q)}" for q in input.images)

    # ------------------------------------------------------------------ RNA

    def rna_source(self, wildcards: Any) -> str:
        return self.plan.rna_source(wildcards.cohort)

    def gene_set_files(self, wildcards: Any) -> list[str]:
        """User gene-set files (GMT/CSV) as inputs, so editing one re-runs the rule."""
        return [s for s in self.cfg.rna.gene_sets if s != "hallmark"]

    def model_rna(self, wildcards: Any) -> list[str]:
        """The cohort's RNA file for a {model} that reads RNA, when the cohort has one (the
        slide-only baselines run without)."""
        cohort = wildcards.cohort
        if RNA not in model_inputs(wildcards.model) or not self.plan.has_rna(cohort):
            return []
        return [self.plan.path(layout.RNA_H5AD, cohort=cohort)]

    def teacher_rna(self, wildcards: Any) -> list[str]:
        """The RNA file for a teacher's heatmaps (its genes); a student needs none."""
        if wildcards.model not in self.plan.teacher_models:
            return []
        return [self.plan.path(layout.RNA_H5AD, cohort=wildcards.cohort)]

    @staticmethod
    def rna_arg(wildcards: Any, input: Any) -> str:
        """``--rna FILE`` when the job has an RNA input, else nothing."""
        return f"--rna {shlex.quote(input.rna[0])}" if input.rna else ""

    # ------------------------------------------------------------------ training jobs

    @staticmethod
    def fold_args(wildcards: Any, output: Any) -> str:
        """``--fold k --out-dir DIR`` per fold of a training job, from its ``metrics`` outputs."""
        dirs = [Path(m).parent for m in output.metrics]
        return " ".join(f"--fold {layout.fold_of(d)} --out-dir {shlex.quote(str(d))}" for d in dirs)

    @staticmethod
    def student_fold_args(wildcards: Any, input: Any, output: Any) -> str:
        """:meth:`fold_args` plus each fold's ``--teacher`` checkpoint (matched by fold, not order)."""
        teachers = {layout.fold_of(Path(t).parent): t for t in input.teacher}
        parts = []
        for m in output.metrics:
            d = Path(m).parent
            k = layout.fold_of(d)
            teacher = shlex.quote(str(teachers[k]))
            parts.append(f"--fold {k} --out-dir {shlex.quote(str(d))} --teacher {teacher}")
        return " ".join(parts)

    @staticmethod
    def heatmap_fold_args(wildcards: Any, input: Any, output: Any) -> str:
        """``--checkpoint C --predictions P --out DIR`` per fold of a heatmaps job, from its
        (unnamed) folder outputs; each fold's inputs matched by fold, not order."""
        checkpoints = {layout.fold_of(Path(c).parent): c for c in input.checkpoint}
        predictions = {layout.fold_of(Path(p).parent): p for p in input.predictions}
        parts = []
        for d in output:
            k = layout.fold_of(Path(d).parent)
            parts.append(f"--checkpoint {shlex.quote(str(checkpoints[k]))} "
                         f"--predictions {shlex.quote(str(predictions[k]))} --out {shlex.quote(str(d))}")
        return " ".join(parts)

    # ------------------------------------------------------------------ evaluation and report

    def truth(self, wildcards: Any) -> list[str]:
        """A demo cohort's truth.csv (the report's ceiling line); nothing for a user cohort."""
        cohort = wildcards.cohort
        return [self.plan.path(layout.DEMO_TRUTH, cohort=cohort)] if self.plan.is_demo(cohort) else []

    @staticmethod
    def truth_arg(wildcards: Any, input: Any) -> str:
        """``--truth FILE`` when the evaluate job has a truth input, else nothing."""
        return f"--truth {shlex.quote(input.truth[0])}" if input.truth else ""

    def fold_outputs(self, pattern: str) -> Callable[[Any], list[str]]:
        """Input function: ``pattern`` (a per-fold result file) for every report model, task, fold."""

        def _inputs(wildcards: Any) -> list[str]:
            c = wildcards.cohort
            return self.plan.fold_paths(c, pattern, self.plan.report_models(c))

        return _inputs

    def wsi_summary(self, wildcards: Any) -> list[str]:
        """The cohort's WSI summary for its report; none for an RNA-only cohort (no slides)."""
        cohort = wildcards.cohort
        return [self.plan.path(layout.WSI_SUMMARY, cohort=cohort)] if self.plan.has_slides(cohort) else []

    @staticmethod
    def wsi_summary_arg(wildcards: Any, input: Any) -> str:
        """``--wsi-summary FILE`` when the report has one, else nothing."""
        return f"--wsi-summary {shlex.quote(input.wsi_summary[0])}" if input.wsi_summary else ""

    def heatmap_dirs(self, wildcards: Any) -> list[str]:
        return self.plan.heatmap_dirs(wildcards.cohort)

    def results_dir(self, wildcards: Any) -> str:
        return self.plan.path(layout.COHORT_RESULTS, cohort=wildcards.cohort)

    def benchmarks_dir(self, wildcards: Any) -> str:
        return self.plan.path(layout.BENCHMARKS_DIR, cohort=wildcards.cohort)

    def model_args(self, wildcards: Any) -> str:
        """``--model M`` for every report model, the main model first."""
        return " ".join(f"--model {shlex.quote(m)}" for m in self.plan.report_models(wildcards.cohort))

    def task_args(self, wildcards: Any) -> str:
        return " ".join(f"--task {shlex.quote(t)}" for t in self.plan.tasks(wildcards.cohort))

    def skipped_args(self, wildcards: Any) -> str:
        """``--skipped 'model=reason'`` for every configured model the cohort's data does not allow."""
        why = self.plan.skipped_models(wildcards.cohort)
        return " ".join(f"--skipped {shlex.quote(f'{m}={r}')}" for m, r in why.items())

    # ------------------------------------------------------------------ external test cohorts

    def external_checkpoints(self, wildcards: Any) -> list[str]:
        """Every fold's checkpoint of {model} trained on the source of the external {cohort}."""
        source = self.plan.external_source(wildcards.cohort)
        return [self.plan.path(layout.CHECKPOINT, cohort=source, task=wildcards.task,
                               model=wildcards.model, fold=k) for k in self.plan.folds]

    def external_source_file(self, pattern: str) -> Callable[[Any], str]:
        """Input function: ``pattern`` of the source cohort of the external {cohort}."""

        def _input(wildcards: Any) -> str:
            return self.plan.path(pattern, cohort=self.plan.external_source(wildcards.cohort))

        return _input

    def external_metrics(self, wildcards: Any) -> list[str]:
        """metrics.json of every task and source model the external {cohort} is scored with."""
        c = wildcards.cohort
        return [self.plan.path(layout.EXTERNAL_METRICS, cohort=c, task=t, model=m)
                for t in self.plan.tasks(c) for m in self.plan.external_trained_models(c)]

    @staticmethod
    def checkpoint_args(wildcards: Any, input: Any) -> str:
        """``--checkpoint C`` per fold, quoted."""
        return " ".join(f"--checkpoint {shlex.quote(c)}" for c in input.checkpoints)

    @staticmethod
    def metrics_args(wildcards: Any, input: Any) -> str:
        """``--metrics M`` per input metrics file, quoted."""
        return " ".join(f"--metrics {shlex.quote(m)}" for m in input.metrics)
