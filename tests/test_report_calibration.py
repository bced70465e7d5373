"""The report's "Survival calibration" block: each model's IBS beside the Kaplan–Meier null on the
same folds, a sentence naming the models that beat the null, and the two figures (also written
as figures/*.png by ``report_figures``)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from test_collect import FakeCohort, build_fake_cohort
from test_report import _run_report

from duopath.evaluation.compare import format_mean_std
from duopath.report.figure_files import report_figures
from duopath.report.html_calibration import calibration_section, calibration_table


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Path]]:
    fc: FakeCohort = build_fake_cohort(tmp_path_factory.mktemp("results"))
    return _run_report(fc, tmp_path_factory.mktemp("report"))


def _block(html: str) -> str:
    survival = html.split('<section id="survival">', 1)[1].split("</section>", 1)[0]
    return survival.split("<h3>Survival calibration</h3>", 1)[1].split("<h3>", 1)[0]


def test_block_shows_each_models_ibs_beside_the_null_on_the_same_folds(page) -> None:
    html, paths = page
    block = _block(html)
    metrics = pd.read_csv(paths["metrics"])
    m = metrics[metrics["task"] == "survival"]
    for model in ("good", "good_noisy"):
        own = m[(m["model"] == model) & (m["metric"] == "ibs")].set_index("fold")["value"]
        km = m[(m["model"] == model) & (m["metric"] == "ibs_km")].set_index("fold")["value"]
        row = re.search(rf"<tr><td class=l>{model}</td>(.*?)</tr>", block).group(1)
        assert format_mean_std(own.mean(), own.std()) in row
        assert format_mean_std(km.mean(), km.std()) in row
        assert f"beats the null in {int((own < km).sum())} of {len(own)} folds" in row
    # the risk-only model: no own curves (n/a with the reason), but its recalibrated risk is there
    weak = re.search(r"<tr><td class=l>weak</td>(.*?)</tr>", block).group(1)
    cells = re.findall(r"<td>(.*?)</td>", weak)
    assert 'class="na"' in cells[0] and "risk score only" in block
    recal = m[(m["model"] == "weak") & (m["metric"] == "ibs_recal")]["value"]
    assert format_mean_std(recal.mean(), recal.std()) in cells[2]
    assert "Which models&#x27; curves beat the Kaplan–Meier null" in block or \
        "Which models' curves beat the Kaplan–Meier null" in block


def test_block_figures_are_embedded_and_become_figure_files(page) -> None:
    html, _ = page
    block = _block(html)
    assert 'alt="IBS against the Kaplan-Meier null"' in block
    assert 'alt="mean survival curve good"' in block
    names = report_figures(html)
    assert "survival.ibs_against_the_kaplan_meier_null.png" in names
    assert "survival.mean_survival_curve_good.png" in names
    classification = html.split('<section id="classification">', 1)[1].split("</section>", 1)[0]
    assert "Survival calibration" not in classification


def test_sentence_names_exactly_the_models_below_the_null() -> None:
    rows = []
    for model, ibs, recal in (("a", [0.10, 0.20], [0.20, 0.20]),
                              ("b", [0.30, math.nan], [0.10, 0.12])):
        for fold in (0, 1):
            rows += [{"task": "survival", "model": model, "fold": fold, "metric": "ibs",
                      "value": ibs[fold], "reason": "" if math.isfinite(ibs[fold]) else "no curves here"},
                     {"task": "survival", "model": model, "fold": fold, "metric": "ibs_interp",
                      "value": math.nan, "reason": "not computed"},
                     {"task": "survival", "model": model, "fold": fold, "metric": "ibs_recal",
                      "value": recal[fold], "reason": ""},
                     {"task": "survival", "model": model, "fold": fold, "metric": "ibs_km",
                      "value": [0.15, 0.18][fold], "reason": ""}]
    inp = SimpleNamespace(metrics=pd.DataFrame(rows))
    body, sentence = calibration_table(inp, "survival", ["a", "b"])
    assert "own curves: a;" in sentence and "risk recalibrated on validation: b." in sentence
    assert "own curves interpolated within bins: none;" in sentence
    b = re.search(r"<tr><td class=l>b</td>(.*?)</tr>", body).group(1)
    # own IBS on fold 0 only: compared with the null of fold 0 only (0.150), not of both folds
    assert "0.300" in b and "beats the null in 0 of 1 folds" in b and "<td>0.150</td>" in b
    assert "beats the null in 2 of 2 folds" in b and "<b>0.110 ± 0.014" in b
    assert 'class="na"' in body and "not computed" in body
    assert calibration_section(SimpleNamespace(), "classification") == ""
