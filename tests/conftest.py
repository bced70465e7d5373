"""Shared fixtures: the real CC0 H&E slide shipped as package data, tiny configs."""

from __future__ import annotations

import shutil
from importlib.resources import files
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cmu_slide() -> Path:
    """CMU-1-Small-Region.svs (Aperio, 2220×2967, 0.499 µm/px; CC0, OpenSlide test data)."""
    path = Path(str(files("duopath") / "data" / "slides" / "CMU-1-Small-Region.svs"))
    assert path.exists(), f"package data missing: {path}"
    return path


@pytest.fixture()
def cmu_cohort(tmp_path: Path, cmu_slide: Path) -> list[str]:
    """Three copies of the CMU slide as a cohort: ``tmp_path/s.csv`` (one patient each, sites
    S1/S2/S1) with the slides in ``tmp_path/slides``; returns the slide ids. The smallest real
    cohort that a batched rule (2 slides a job) cuts into two jobs."""
    names = ["cmu_a", "cmu_b", "cmu_c"]
    (tmp_path / "slides").mkdir()
    for n in names:
        shutil.copy(cmu_slide, tmp_path / "slides" / f"{n}.svs")
    pd.DataFrame({"patient_id": ["P1", "P2", "P3"], "slide_id": names,
                  "slide_path": [f"{n}.svs" for n in names], "site": ["S1", "S2", "S1"],
                  "time": [1.0, 2.0, 3.0], "event": [1, 0, 1]}).to_csv(tmp_path / "s.csv", index=False)
    return names


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: one torch thread is as fast, and far faster when other jobs share the cores.

    Modules of small-model tests ask for it with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``; the count is restored after.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
