"""Shared fixtures: the real CC0 H&E slide shipped as package data, tiny configs."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cmu_slide() -> Path:
    """CMU-1-Small-Region.svs (Aperio, 2220×2967, 0.499 µm/px; CC0, OpenSlide test data)."""
    path = Path(str(files("duopath") / "data" / "slides" / "CMU-1-Small-Region.svs"))
    assert path.exists(), f"package data missing: {path}"
    return path


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
