"""The report parts the workflow adds: the jobs' benchmark summary, the QC contact sheet, and
the report's figures as files (for `snakemake --report`)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from duopath.report.benchmarks import benchmarks_html, read_benchmarks, slowest_jobs, stage_summary
from duopath.report.contact_sheet import contact_sheet, write_contact_sheet
from duopath.report.figure_files import report_figures, write_report_figures

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def bench_file(root: Path, rel: str, seconds: float, rss: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t0\t{seconds / 2}\n")


def test_benchmarks_per_stage_and_slowest(tmp_path: Path) -> None:
    bench_file(tmp_path, "segment/s1.tsv", 1.0, "100")
    bench_file(tmp_path, "segment/s2.tsv", 3.0, "NA")  # too short to sample: no peak known
    bench_file(tmp_path, "teacher/survival/teacher/fold0.tsv", 60.0, "2000.5")
    (tmp_path / "teacher" / "broken.tsv").write_text("not a benchmark\n")
    table = read_benchmarks(tmp_path)
    assert len(table) == 3
    assert set(table["job"]) == {"s1", "s2", "survival/teacher/fold0"}
    stages = stage_summary(table).set_index("stage")
    assert list(stages.index) == ["teacher", "segment"]  # most total time first
    assert stages.loc["segment", "jobs"] == 2 and stages.loc["segment", "total_s"] == 4.0
    assert stages.loc["segment", "max_rss_mb"] == 100.0  # NA ignored, not a zero
    assert slowest_jobs(table, 1)["job"].tolist() == ["survival/teacher/fold0"]
    html = benchmarks_html(table)
    assert "Slowest jobs" in html and "2,000" in html
    assert read_benchmarks(tmp_path / "absent").empty
    assert "No job benchmarks" in benchmarks_html(read_benchmarks(tmp_path / "absent"))


def qc_image(path: Path, colour: tuple[int, int, int]) -> Path:
    Image.new("RGB", (300, 200), colour).save(path)
    return path


def test_contact_sheet_puts_problem_slides_first(tmp_path: Path) -> None:
    summary = pd.DataFrame({"slide_id": ["a", "b"], "status": ["ok", "failed"],
                            "error": ["", "OpenSlide cannot open"], "tissue_area_mm2": [2.5, np.nan],
                            "tiles_10x": [12, 0], "tiles_20x": [48, 0]})
    images = [qc_image(tmp_path / "a.tiles.jpg", (0, 0, 255)),
              qc_image(tmp_path / "b.tiles.jpg", (0, 255, 0))]
    sheet = contact_sheet(summary, images)
    assert sheet.width == 2 * (256 + 8)
    first = np.asarray(sheet)[80, 100]  # inside the first thumbnail: the failed slide b (green)
    assert first[1] > 200 and first[2] < 50
    with pytest.raises(ValueError, match="not slide a's"):
        contact_sheet(summary, list(reversed(images)))
    with pytest.raises(ValueError, match="1 QC images for 2 slides"):
        contact_sheet(summary, images[:1])
    summary.to_csv(tmp_path / "wsi_summary.csv", index=False)
    write_contact_sheet(tmp_path / "wsi_summary.csv", images, tmp_path / "sheet.png")
    assert Image.open(tmp_path / "sheet.png").size == sheet.size


def png(colour: str) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), colour).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_report_figures_are_the_pages_images(tmp_path: Path) -> None:
    page = (
        f'<section id="survival"><figure><img src="{png("red")}" alt="Kaplan–Meier teacher"></figure>'
        f'<img src="{png("blue")}" alt="training curves teacher">'
        f'<img src="{png("blue")}" alt="heatmap teacher P1_T"></section>'
        f'<section id="classification"><img src="{png("green")}" alt="training curves teacher"></section>'
    )
    figures = report_figures(page)
    assert list(figures) == ["survival.kaplan_meier_teacher.png", "survival.training_curves_teacher.png",
                             "classification.training_curves_teacher.png"]
    km = Image.open(io.BytesIO(figures["survival.kaplan_meier_teacher.png"]))
    assert km.getpixel((0, 0)) == (255, 0, 0)
    written = write_report_figures(page, tmp_path / "figures")
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == sorted(p.name for p in written)
