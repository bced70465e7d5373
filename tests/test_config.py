"""Config validation fails before any work, naming the key/file and giving a hint."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from duopath.config import ConfigError, DuopathConfig, load_config, parse_config
from duopath.workflow import Plan

REPO = Path(__file__).resolve().parents[1]


def _raw() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_default_config_is_valid() -> None:
    cfg = load_config(REPO / "config.yaml")
    assert isinstance(cfg, DuopathConfig)
    assert "demo" in cfg.cohorts and cfg.cohorts["demo"].demo is not None
    assert list(cfg.tiling.magnifications) == ["10x", "20x"]


def test_unknown_key_is_named() -> None:
    raw = _raw()
    raw["tiling"]["min_tisue_fraction"] = 0.3
    with pytest.raises(ConfigError, match=r"tiling\.min_tisue_fraction: unknown key"):
        parse_config(raw)


def test_wrong_type_is_named() -> None:
    raw = _raw()
    raw["tiling"]["tile_px"] = "big"
    with pytest.raises(ConfigError, match=r"tiling\.tile_px"):
        parse_config(raw)


def test_missing_sample_sheet_is_named(tmp_path: Path) -> None:
    raw = _raw()
    raw["cohorts"]["real"] = {"sample_sheet": str(tmp_path / "nope.csv")}
    with pytest.raises(ConfigError, match=r"cohorts\.real\.sample_sheet: .*nope\.csv does not exist"):
        parse_config(raw)


def test_cohort_needs_sheet_or_demo() -> None:
    raw = _raw()
    raw["cohorts"]["empty"] = {"tasks": ["survival"]}
    with pytest.raises(ConfigError, match=r"cohorts\.empty.*sample_sheet"):
        parse_config(raw)


@pytest.mark.parametrize("mags", [{"10x": 1.0, "20x": 0.6}, {"20x": 0.5, "10x": 1.0}, {}])
def test_magnifications_must_nest(mags: dict) -> None:
    raw = _raw()
    raw["tiling"]["magnifications"] = mags
    with pytest.raises(ConfigError, match=r"tiling\.magnifications"):
        parse_config(raw)


def test_only_cohorts_from_command_line_string() -> None:
    raw = _raw()
    raw["only_cohorts"] = "demo"
    cfg = parse_config(raw)
    assert cfg.only_cohorts == ["demo"]
    assert Plan(cfg).cohorts == ["demo"]
    raw["only_cohorts"] = "demo,nosuch"
    with pytest.raises(ConfigError, match="nosuch"):
        Plan(parse_config(raw))
