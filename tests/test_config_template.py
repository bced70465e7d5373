"""The real-cohort template: valid, and every hyper-parameter it writes out is the package default."""

from __future__ import annotations

from pathlib import Path

import yaml

from duopath.config import DuopathConfig

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "examples" / "tcga_template.yaml"


def _template() -> dict:
    return yaml.safe_load(TEMPLATE.read_text())


def test_template_validates_apart_from_its_placeholder_paths() -> None:
    raw = _template()
    cohort = raw["cohorts"]["tcga_brca"]
    assert {"sample_sheet", "rna", "tasks", "time_column", "event_column"} <= set(cohort)
    cfg = DuopathConfig.model_validate(raw)  # schema only: the placeholder files do not exist
    assert list(cfg.cohorts) == ["tcga_brca"]  # a user's config runs exactly its cohorts


def test_template_hyper_parameters_are_the_package_defaults() -> None:
    raw = _template()
    cfg = DuopathConfig.model_validate(raw)
    defaults = DuopathConfig.model_validate({"cohorts": raw["cohorts"]})
    for section in raw:
        if section == "cohorts":
            continue
        got, want = getattr(cfg, section), getattr(defaults, section)
        assert got == want, f"{section}: template differs from the package default"


def test_demo_config_is_not_the_defaults() -> None:
    """The shipped config.yaml is demo-sized on purpose: the template must not be a copy of it."""
    demo = yaml.safe_load((REPO / "config.yaml").read_text())
    assert demo["teacher"]["dim"] != DuopathConfig.model_fields["teacher"].default.dim
