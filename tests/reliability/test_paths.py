"""Paths with spaces and non-ASCII letters go through the real DAG (issue 12, item 3).

Every path a rule passes to its command is quoted (``{input.slide:q}``, ``shlex.quote`` in the
input functions); without that, ``segment`` of ``my slides ü/CMU 1 ü.svs`` gets three arguments
and fails. The slide, the working directory and the output folder all carry a space and a ``ü``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from duopath import layout

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_slide_path_with_space_and_umlaut_segments_tiles_and_embeds(tmp_path: Path, cmu_slide: Path) -> None:
    work = tmp_path / "work dir ü"
    slides = work / "my slides ü"
    slides.mkdir(parents=True)
    shutil.copy(cmu_slide, slides / "CMU 1 ü.svs")
    pd.DataFrame({"patient_id": ["P1"], "slide_id": ["cmu"], "slide_path": ["my slides ü/CMU 1 ü.svs"],
                  "time": [10.0], "event": [1]}).to_csv(work / "samples ü.csv", index=False)
    config = {"output_dir": "out put ü",
              "cohorts": {"spaced": {"sample_sheet": "samples ü.csv", "slide_dir": "."}},
              "on_slide_error": "fail",  # a quoting bug must fail the job, not become a `failed` row
              "encoder": {"num_workers": 0, "batch_size": 16}}
    (work / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    out = work / "out put ü"
    targets = [layout.out("out put ü", p, cohort="spaced")
               for p in (layout.WSI_SUMMARY, layout.QC_CONTACT_SHEET)]
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"),
                          "--cores", "2", *targets], cwd=work, capture_output=True, text=True,
                         timeout=600, env=env)
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    meta = json.loads((out / layout.MASK_JSON.format(cohort="spaced", slide="cmu")).read_text())
    assert meta["status"] == "ok", meta
    summary = pd.read_csv(out / layout.WSI_SUMMARY.format(cohort="spaced"))
    row = summary.set_index("slide_id").loc["cmu"]
    assert row["status"] == "ok" and row["tiles_20x"] > 0
    store = out / layout.FEATURES.format(cohort="spaced", encoder="efficientnet_lite0", slide="cmu")
    assert store.is_dir()
    assert (out / layout.QC_CONTACT_SHEET.format(cohort="spaced")).stat().st_size > 0
