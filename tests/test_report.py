"""The cohort report: renders from a fake results tree, is self-contained, shows n/a with reasons;
the heatmap overlay paints each tile's value where the tile is; the survival analyses behind the
plots use the training threshold and the right landmark survival."""

from __future__ import annotations

import base64
import io
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib import colormaps
from PIL import Image
from test_collect import FAILED_ERROR, FAILED_SLIDE, MODELS, FakeCohort, build_fake_cohort

from duopath.cli.report import evaluate, report
from duopath.evaluation.cohort_tables import load_cohort_tables
from duopath.evaluation.collect import FoldRun
from duopath.evaluation.compare import format_mean_std
from duopath.report.analysis import landmark_calibration, pooled_risk_groups
from duopath.report.heatmaps import heatmap_overlay, slide_thumbnail
from duopath.report.html import ReportInputs, protocol_section


class _Refs(HTMLParser):
    """Every tag and every attribute that can load something (src, href, srcset, data, poster...)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.imgs: list[dict[str, str | None]] = []
        self.refs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs))
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "poster", "action", "background", "xlink:href"):
                self.refs.append((tag, name, value or ""))


def _run_report(fc: FakeCohort, out_dir: Path) -> tuple[str, dict[str, Path]]:
    paths = {n: out_dir / f"{n}.csv" for n in ("metrics", "summary", "comparisons")}
    evaluate(
        fc.results,
        fc.sheet,
        fc.splits,
        paths["metrics"],
        paths["summary"],
        paths["comparisons"],
        model=list(MODELS),
        task=None,
        n_boot=100,
        seed=0,
    )
    html_path = out_dir / "report.html"
    report(
        fc.results,
        fc.sheet,
        fc.splits,
        paths["metrics"],
        paths["summary"],
        paths["comparisons"],
        html_path,
        splits_info=fc.splits_info,
        wsi_summary=fc.wsi_summary,
        cohort=fc.cohort,
        config_hash="cafe1234",
        landmark=None,
        time_unit="months",
        max_heatmaps=12,
        skipped=["snn=the cohort has no RNA"],
    )
    return html_path.read_text(encoding="utf-8"), paths


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> FakeCohort:
    fc = build_fake_cohort(tmp_path_factory.mktemp("results"))
    heat = fc.fold_dir("survival", "good", 1) / "heatmaps"
    heat.mkdir()
    Image.new("RGB", (2000, 1000), (200, 30, 30)).save(heat / "P014_P014-01_20x.png")
    (heat / "P015_P015-01_20x.png").write_bytes(b"not a png at all")
    Image.new("RGB", (20, 10)).save(heat / "stray_not_in_the_index.png")
    entry = {"magnification": "20x", "maps": ["T", "E"], "gate_weight": 0.0}
    (heat / "heatmaps.json").write_text(json.dumps({"images": [
        {**entry, "patient_id": "P014", "slide_id": "P014-01", "reason": "highest risk #1", "risk": 2.5,
         "file": "P014_P014-01_20x.png"},
        {**entry, "patient_id": "P015", "slide_id": "P015-01", "reason": "lowest risk #1", "risk": -1.0,
         "file": "P015_P015-01_20x.png"},
    ]}))
    return fc


@pytest.fixture(scope="module")
def rendered(fake: FakeCohort, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Path]]:
    return _run_report(fake, tmp_path_factory.mktemp("report"))


def test_report_is_self_contained_with_valid_embedded_pngs(rendered) -> None:
    page, _ = rendered
    parser = _Refs()
    parser.feed(page)
    assert not {"script", "link", "iframe", "object", "embed"} & set(parser.tags)
    assert len(parser.imgs) >= 3 * 4  # KM, calibration, ROC, training curves per model at least
    for img in parser.imgs:
        src = img.get("src") or ""
        heatmap = (img.get("alt") or "").startswith("heatmap ")
        mime, fmt = ("image/jpeg", "JPEG") if heatmap else ("image/png", "PNG")
        assert src.startswith(f"data:{mime};base64,"), src[:60]
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1], validate=True))) as im:
            assert im.format == fmt
            im.verify()
    non_images = [(t, a, v) for t, a, v in parser.refs if not (t == "img" and a == "src")]
    assert all(a == "href" and v.startswith("#") for _, a, v in non_images), non_images
    assert not re.search(r"https?://", page)
    assert not re.search(r"""(src|href)\s*=\s*["']?(/|\.\.?/|file:)""", page)
    assert "url(" not in page and "@import" not in page


def test_report_shows_every_model_the_failed_slide_and_provenance(rendered) -> None:
    page, _ = rendered
    for model in MODELS:
        assert f">{model}<" in page
    assert FAILED_SLIDE in page and FAILED_ERROR in page
    assert "cafe1234" in page and "duopath" in page
    assert "site-disjoint" in page and "yes, every fold" in page
    assert "<h3>Ablations</h3>" in page and "good_noisy" in page.split("<h3>Ablations</h3>", 1)[1]
    assert "models not run (what the data allows)" in page and "snn: the cohort has no RNA" in page


def test_best_mean_is_bold_and_only_the_best(rendered) -> None:
    page, paths = rendered
    s = pd.read_csv(paths["summary"])
    survival = page.split('<section id="survival">', 1)[1].split("</table>", 1)[0]  # the comparison table
    c = s[(s["task"] == "survival") & (s["metric"] == "c_harrell")].set_index("model")
    best = c["mean"].idxmax()
    assert best == "good"
    assert f"<b>{format_mean_std(c.at[best, 'mean'], c.at[best, 'std'])}</b>" in survival
    for other in ("good_noisy", "weak"):
        text = format_mean_std(c.at[other, "mean"], c.at[other, "std"])
        assert text in survival and f"<b>{text}</b>" not in survival
    ibs = s[(s["task"] == "survival") & (s["metric"] == "ibs")].set_index("model")
    best_ibs = ibs["mean"].idxmin()  # lower is better; the risk-only model's NaN is skipped
    assert best_ibs != "weak"
    assert f"<b>{format_mean_std(ibs.at[best_ibs, 'mean'], ibs.at[best_ibs, 'std'])}</b>" in survival


def test_undefined_metric_is_na_with_its_reason_never_zero(rendered) -> None:
    page, _ = rendered
    survival = page.split('<section id="survival">', 1)[1].split("</table>", 1)[0]
    weak_row = re.search(r"<tr><td class=l>weak</td>(.*?)</tr>", survival).group(1)
    cells = re.findall(r"<td>(.*?)</td>", weak_row)
    from duopath.evaluation.collect import TASK_METRICS

    ibs_cell = cells[TASK_METRICS["survival"].index("ibs")]  # one cell per metric, in that order
    assert 'class="na"' in ibs_cell and "risk score only" in ibs_cell and "0.000" not in ibs_cell
    notes = page.split('<section id="survival">', 1)[1].split("</table>", 1)[1].split("</ol>", 1)[0]
    assert notes.startswith('<ol class="notes">') and "risk score only" in notes


def test_identical_fold_reasons_are_merged(rendered) -> None:
    page, _ = rendered
    assert "folds 0, 1, 2: the model predicts a risk score only, no survival curves" in page


def test_mean_over_fewer_folds_says_so(fake: FakeCohort, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(fake.root, tmp_path / "tree")
    fc = FakeCohort(tmp_path / "tree", fake.cohort)
    (fc.fold_dir("survival", "good_noisy", 1) / "predictions.parquet").unlink()
    (tmp_path / "out").mkdir()
    page, paths = _run_report(fc, tmp_path / "out")
    table = page.split('<section id="survival">', 1)[1].split("</table>", 1)[0]
    row = re.search(r"<tr><td class=l>good_noisy</td>(.*?)</tr>", table).group(1)
    from duopath.evaluation.collect import TASK_METRICS

    assert row.count("(2/3 folds)") == len(TASK_METRICS["survival"])  # every survival metric
    assert "fold 1: no predictions.parquet (fold not run or failed)" in row
    s = pd.read_csv(paths["summary"]).set_index(["task", "model", "metric"])
    m = pd.read_csv(paths["metrics"])
    defined = m[(m["model"] == "good_noisy") & (m["metric"] == "c_harrell") & (m["task"] == "survival")]
    assert s.at[("survival", "good_noisy", "c_harrell"), "mean"] == pytest.approx(defined["value"].mean())
    assert defined["value"].notna().sum() == 2


def test_heatmaps_are_the_chosen_ones_with_captions_and_a_broken_one_is_reported(rendered) -> None:
    page, _ = rendered
    caption = "good, fold 1: patient P014, slide P014-01 — highest risk #1; predicted risk 2.5"
    assert caption in page and "gate weight of 20x 0.00 (did not contribute)" in page
    assert "P015_P015-01_20x.png unreadable" in page
    assert "stray_not_in_the_index" not in page  # only what the heatmap step chose
    assert "T</b>: attention of the tumour-gene tokens" in page  # what T / E / ω mean
    m = re.search(r'<img src="data:image/jpeg;base64,([^"]+)" alt="heatmap good P014_P014-01_20x">', page)
    with Image.open(io.BytesIO(base64.b64decode(m.group(1)))) as im:
        assert max(im.size) == 1600  # shrunk from 2000 px, still large enough to zoom into
        assert im.format == "JPEG"  # tissue under a colour map: a third of a PNG's bytes


def test_report_outputs_are_atomic_and_utf8(rendered) -> None:
    page, paths = rendered
    folder = paths["metrics"].parent
    assert not list(folder.glob(".*tmp-*"))
    assert "±" in page and page.startswith("<!DOCTYPE html>")


# --------------------------------------------------------------------------- analyses


def _run(fold: int, pred: pd.DataFrame, inner: pd.DataFrame | None, tmp: Path, edges=None) -> FoldRun:
    d = tmp / f"fold{fold}"
    d.mkdir(parents=True, exist_ok=True)
    if inner is not None:
        inner.to_parquet(d / "inner_predictions.parquet")
    info = {"time_bins": None if edges is None else [*map(float, edges[:-1]), None]}
    return FoldRun("survival", "m", fold, d, pred, info)


def test_risk_groups_use_each_folds_training_threshold_not_the_test_median(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    runs = []
    for k in range(2):
        risk = rng.normal(size=20)
        pred = pd.DataFrame(
            {
                "patient_id": [f"{k}-{i}" for i in range(20)],
                "fold": k,
                "risk": risk,
                "time": rng.uniform(1, 10, 20),
                "event": rng.integers(0, 2, 20).astype(float),
            }
        )
        # training risks far above every test risk: every test patient is low risk
        inner = pd.DataFrame({"risk": np.full(10, 100.0) + np.arange(10), "role": "train"})
        runs.append(_run(k, pred, inner, tmp_path))
    pooled = pooled_risk_groups(runs)
    assert pooled.groups is not None and pooled.groups.n_high == 0 and pooled.groups.n_low == 40
    assert pooled.thresholds == {0: pytest.approx(104.5), 1: pytest.approx(104.5)}
    assert not pooled.groups.logrank_p.ok and "low-risk group" in pooled.groups.logrank_p.reason
    assert math.isnan(pooled.groups.threshold)


def test_risk_groups_without_training_risks_say_why(tmp_path: Path) -> None:
    pred = pd.DataFrame(
        {"patient_id": ["a", "b"], "fold": 0, "risk": [0.0, 1.0], "time": [1.0, 2.0], "event": [1.0, 0.0]}
    )
    pooled = pooled_risk_groups([_run(0, pred, None, tmp_path)])
    assert pooled.groups is None and "inner_predictions" in pooled.reason


def test_calibration_recovers_the_true_landmark_survival(tmp_path: Path) -> None:
    """Two groups whose true S(t0) is 0.3 and 0.8, predicted exactly: KM at t0 must match."""
    rng = np.random.default_rng(0)
    t0, n = 12.0, 600
    true_s = np.repeat([0.3, 0.8], n // 2)
    time = rng.exponential(t0 / -np.log(true_s))  # S(t0) = exp(-t0 / scale) = true_s
    edges = np.array([0.0, t0, 30.0, np.inf])
    pred = pd.DataFrame(
        {
            "patient_id": np.arange(n).astype(str),
            "fold": 0,
            "risk": -true_s,
            "time": time,
            "event": 1.0,
            "surv_0": true_s,
            "surv_1": true_s * 0.5,
            "surv_2": true_s * 0.2,
        }
    )
    cal = landmark_calibration([_run(0, pred, None, tmp_path, edges)], t0, max_groups=2, min_group_size=10)
    tab = cal.table
    assert list(tab["predicted"]) == pytest.approx([0.3, 0.8])
    assert list(tab["observed"]) == pytest.approx([0.3, 0.8], abs=0.07)
    assert (tab["ci_low"] <= tab["observed"]).all() and (tab["observed"] <= tab["ci_high"]).all()
    # before the first edge the model predicts S = 1, and a landmark past follow-up is undefined
    late = landmark_calibration(
        [_run(0, pred.assign(time=np.minimum(time, 5.0), event=0.0), None, tmp_path, edges)], t0, max_groups=2
    )
    assert late.table["observed"].isna().all() and late.table["reason"].str.contains("follow-up").all()


def test_calibration_of_a_risk_only_model_says_why(tmp_path: Path) -> None:
    pred = pd.DataFrame({"patient_id": ["a"], "fold": 0, "risk": [1.0], "time": [3.0], "event": [1.0]})
    cal = landmark_calibration([_run(0, pred, None, tmp_path)], 2.0)
    assert cal.table is None and "risk score only" in cal.reason


# --------------------------------------------------------------------------- heatmap overlay


def test_heatmap_overlay_paints_each_value_on_its_tile() -> None:
    thumb = np.full((60, 80, 3), 128, np.uint8)  # 8 µm/px thumbnail of a 0.5 µm/px slide: 16 level-0 px/px
    xy = np.array([[0, 0], [320, 0], [640, 320], [0, 640]], float)  # level-0 top-left corners
    values = np.array([0.0, 1.0, 0.5, np.nan])
    img = np.asarray(heatmap_overlay(thumb, xy, 320, values, slide_mpp=0.5, thumb_mpp=8.0, alpha=1.0))
    assert img.shape == thumb.shape
    cmap = colormaps["viridis"]  # perceptually uniform: the default

    def colour(v: float) -> np.ndarray:
        return np.round(np.asarray(cmap(v)[:3]) * 255)

    # tile (320, 0) level-0 -> thumbnail x 20..40, y 0..20
    np.testing.assert_array_equal(img[10, 30], colour(1.0))
    np.testing.assert_array_equal(img[10, 10], colour(0.0))
    np.testing.assert_array_equal(img[30, 50], colour(0.5))
    np.testing.assert_array_equal(img[50, 10], [128, 128, 128])  # the NaN tile is left unpainted
    np.testing.assert_array_equal(img[50, 70], [128, 128, 128])  # no tile here
    half = np.asarray(heatmap_overlay(thumb, xy, 320, values, 0.5, 8.0, alpha=0.5))
    np.testing.assert_allclose(half[10, 30], 0.5 * 128 + 0.5 * colour(1.0), atol=1)


def test_heatmap_overlay_hottest_region_is_where_the_high_tiles_are() -> None:
    """Random tile values with a planted hot block: the reddest pixels lie inside the block."""
    rng = np.random.default_rng(0)
    cols, rows = np.meshgrid(np.arange(10), np.arange(8))
    xy = np.stack([cols.ravel(), rows.ravel()], 1) * 448.0  # 224 µm tiles at 0.5 µm/px
    values = rng.uniform(0, 0.3, xy.shape[0])
    hot = (cols.ravel() >= 6) & (rows.ravel() <= 2)
    values[hot] = rng.uniform(0.9, 1.0, hot.sum())
    thumb = Image.new("RGB", (300, 240), (240, 200, 220))
    img = np.asarray(heatmap_overlay(thumb, xy, 448, values, 0.5, 8.0, cmap="viridis", scale="rank")).astype(
        float
    )
    brightness = img.sum(axis=2)  # viridis: high values are bright yellow
    y, x = np.unravel_index(brightness[:224, :280].argmax(), (224, 280))
    assert x >= 6 * 28 and y < 3 * 28


def test_heatmap_overlay_refuses_bad_inputs() -> None:
    thumb = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="one value per tile"):
        heatmap_overlay(thumb, [[0, 0]], 16, [1.0, 2.0], 0.5, 8.0)
    with pytest.raises(ValueError, match="thumb_mpp"):
        heatmap_overlay(thumb, [[0, 0]], 16, [1.0], 0.5, 0.0)
    with pytest.raises(ValueError, match="scale"):
        heatmap_overlay(thumb, [[0, 0]], 16, [1.0], 0.5, 8.0, scale="log")  # type: ignore[arg-type]


def test_slide_thumbnail_reads_the_mask_json_resolution(tmp_path: Path) -> None:
    Image.new("RGB", (20, 10), (1, 2, 3)).save(tmp_path / "s.mask.jpg")
    (tmp_path / "s.json").write_text(json.dumps({"status": "ok", "slide_mpp": 0.25, "mask_mpp": 8.0}))
    rgb, slide_mpp, thumb_mpp = slide_thumbnail(tmp_path / "s.json", tmp_path / "s.mask.jpg")
    assert rgb.shape == (10, 20, 3) and (slide_mpp, thumb_mpp) == (0.25, 8.0)
    (tmp_path / "f.json").write_text(json.dumps({"status": "failed", "error": "no tissue"}))
    with pytest.raises(ValueError, match="no tissue"):
        slide_thumbnail(tmp_path / "f.json", tmp_path / "s.mask.jpg")


def test_protocol_flags_a_test_site_seen_in_training(fake: FakeCohort, tmp_path: Path) -> None:
    sp = pd.read_csv(fake.splits, dtype={"patient_id": str})
    # move one fold-0 test patient (site S0) into fold 1's training patients' site: relabel it
    t = load_cohort_tables(fake.sheet, fake.splits)
    moved = t.role(0, "test")[0]
    sp.loc[(sp["fold"] == 1) & (sp["patient_id"] == moved), "role"] = "test"
    other = t.role(1, "test")[0]
    sp.loc[(sp["fold"] == 1) & (sp["patient_id"] == other), "role"] = "train"
    sp.to_csv(tmp_path / "splits.csv", index=False)
    tables = load_cohort_tables(fake.sheet, tmp_path / "splits.csv")
    site = tables.patients.at[moved, "site"]
    inputs = ReportInputs(
        cohort="x",
        tables=tables,
        metrics=pd.DataFrame(),
        summary=pd.DataFrame(),
        comparisons=pd.DataFrame(),
        runs={},
    )
    text = protocol_section(inputs)
    assert f"no: fold 1: {site}" in text
    assert "yes, every fold" in protocol_section(
        ReportInputs(
            cohort="x",
            tables=t,
            metrics=pd.DataFrame(),
            summary=pd.DataFrame(),
            comparisons=pd.DataFrame(),
            runs={},
        )
    )
    stratified = protocol_section(ReportInputs(
        cohort="x", tables=t, metrics=pd.DataFrame(), summary=pd.DataFrame(), comparisons=pd.DataFrame(),
        runs={}, splits_info={"folds": 3, "site_disjoint": False, "reason": "r", "seed": 1,
                              "strata": "outcome and modalities"}))
    assert "folds stratified by</td><td class=l>outcome and modalities" in stratified


def test_cli_turns_a_bad_model_list_into_exit_code_1(fake: FakeCohort, tmp_path: Path) -> None:
    import typer

    with pytest.raises(typer.Exit) as exc:
        evaluate(
            fake.results,
            fake.sheet,
            fake.splits,
            tmp_path / "m.csv",
            tmp_path / "s.csv",
            tmp_path / "c.csv",
            model=["good", "no_such_model"],
            task=["survival"],
            n_boot=10,
            seed=0,
        )
    assert exc.value.exit_code == 1
    assert not (tmp_path / "m.csv").exists()  # nothing half-written


def test_report_states_evaluated_and_excluded_patients_units_and_pooled_metric(
    fake: FakeCohort, tmp_path: Path
) -> None:
    """A patient the trainer left out (no RNA) is named with its reason; times carry their unit;
    fold-mean and pooled metrics are both there and labelled; the page leads with one overlaid KM."""
    import shutil

    shutil.copytree(fake.root, tmp_path / "tree")
    fc = FakeCohort(tmp_path / "tree", fake.cohort)
    d = fc.fold_dir("survival", "good", 0)
    pred = pd.read_parquet(d / "predictions.parquet")
    gone = str(pred["patient_id"].iloc[0])
    pred.iloc[1:].to_parquet(d / "predictions.parquet")
    info = json.loads((d / "metrics.json").read_text())
    (d / "metrics.json").write_text(json.dumps({**info, "excluded": {gone: "no RNA (missing_rna: exclude)"}}))
    (tmp_path / "out").mkdir()
    page, _ = _run_report(fc, tmp_path / "out")
    evaluated = page.split("<h3>Patients evaluated (survival)</h3>", 1)[1].split("</table>", 1)[0]
    row = re.search(r"<tr><td class=l>good</td>(.*?)</tr>", evaluated).group(1)
    n_test = sum(len(load_cohort_tables(fc.sheet, fc.splits).role(k, "test")) for k in range(3))
    assert f"{n_test - 1} of {n_test}" in row and f"{gone} (fold 0): no RNA (missing_rna: exclude)" in row
    other = re.search(r"<tr><td class=l>weak</td>(.*?)</tr>", evaluated).group(1)
    assert f"{n_test} of {n_test}" in other and "none" in other
    assert re.search(r"median follow-up time</td><td class=l>[\d.]+ months", page)
    survival = page.split('<section id="survival">', 1)[1]
    assert "<th>pooled <span title=\"Harrell" in survival.split("</table>", 1)[0]
    assert "fold-mean ± standard deviation" in survival
    main = survival.split("<h3>Main models compared</h3>", 1)[1].split("<details>", 1)[0]
    assert main.count("<img") == 1 and "numbers at risk" in main and "time in months" in main


def test_overlaid_km_numbers_at_risk_and_roc_positive_class(tmp_path: Path) -> None:
    from duopath.report import plots

    rng = np.random.default_rng(0)
    runs = []
    for k in range(2):
        pred = pd.DataFrame({"patient_id": [f"{k}-{i}" for i in range(30)], "fold": k,
                             "risk": rng.normal(size=30), "time": rng.uniform(1, 20, 30),
                             "event": rng.integers(0, 2, 30).astype(float)})
        inner = pd.DataFrame({"risk": rng.normal(size=30), "role": "train"})
        runs.append(_run(k, pred, inner, tmp_path))
    pooled = pooled_risk_groups(runs)
    counts = plots.at_risk_counts(pooled, [0.0, 10.0, 1e9])
    time = pd.concat([r.predictions for r in runs])["time"].to_numpy()
    high = pooled.groups.high
    assert counts["high"] == [int(high.sum()), int((time[high] >= 10).sum()), 0]
    assert counts["low"] == [int((~high).sum()), int((time[~high] >= 10).sum()), 0]
    fig = plots.km_overlay_figure({"a": pooled, "b": pooled}, "months")
    _, tab = fig.axes
    assert tab.get_xlabel() == "time (months)" and len(tab.texts) == 4 * 6  # 2 models × 2 groups × 6 ticks
    y = np.array(["neg", "pos"] * 10)
    roc = plots.roc_overlay_figure({"m": (y, np.tile([[0.6, 0.4], [0.4, 0.6]], (10, 1)), ["neg", "pos"])})
    assert "positive class: pos (vs neg)" in roc.axes[0].get_title()
    assert "pooled AUC 1.000" in roc.axes[0].get_legend().get_texts()[0].get_text()


def test_demo_ceiling_scored_on_the_main_models_patients_and_shown_in_the_table(
    fake: FakeCohort, tmp_path: Path
) -> None:
    """`evaluate --truth` writes the planted truth's C/AUC per fold on the MAIN model's test
    patients (a patient it left out is left out of the ceiling too); the report shows it as one
    'planted truth (ceiling)' row per task, and no such row without a reference."""
    import shutil

    from duopath.evaluation.survival import harrell_c

    shutil.copytree(fake.root, tmp_path / "tree")
    fc = FakeCohort(tmp_path / "tree", fake.cohort)
    d = fc.fold_dir("survival", "good", 0)
    pred = pd.read_parquet(d / "predictions.parquet")
    pred.iloc[3:].to_parquet(d / "predictions.parquet")  # the main model scored all but 3 patients
    sheet = pd.read_csv(fc.sheet).drop_duplicates("patient_id")
    rng = np.random.default_rng(1)
    truth = sheet[["patient_id", "time", "event"]].assign(
        label=np.where(rng.random(len(sheet)) < 0.5, "high", "low"),
        linear_predictor=-np.log(sheet["time"].to_numpy()) + rng.normal(scale=0.5, size=len(sheet)),
        label_probability=rng.random(len(sheet)),
    )
    truth.to_csv(tmp_path / "truth.csv", index=False)
    out = {n: tmp_path / f"{n}.csv" for n in ("metrics", "summary", "comparisons", "reference")}
    evaluate(fc.results, fc.sheet, fc.splits, out["metrics"], out["summary"], out["comparisons"],
             model=list(MODELS), task=None, n_boot=20, seed=0, truth=tmp_path / "truth.csv",
             reference_out=out["reference"])
    ref = pd.read_csv(out["reference"])
    assert set(ref["model"]) == {"planted_truth"} and set(ref["metric"]) == {"c_harrell", "auc"}
    t0 = truth.set_index("patient_id").loc[pred["patient_id"].iloc[3:]]
    expected = harrell_c(t0["time"].to_numpy(float), t0["event"].to_numpy(int),
                         t0["linear_predictor"].to_numpy(float)).value
    got = ref[(ref["task"] == "survival") & (ref["fold"] == 0)]["value"].item()
    assert got == pytest.approx(expected)
    common = dict(splits_info=fc.splits_info, wsi_summary=fc.wsi_summary, cohort=fc.cohort, config_hash="",
                  landmark=None, time_unit="", max_heatmaps=0, skipped=None)
    report(fc.results, fc.sheet, fc.splits, out["metrics"], out["summary"], out["comparisons"],
           tmp_path / "with.html", reference=out["reference"], **common)
    page = (tmp_path / "with.html").read_text(encoding="utf-8")
    survival = page.split('<section id="survival">', 1)[1].split("</section>", 1)[0]
    row = re.search(r"<tr><td class=l><i>planted truth \(ceiling\)</i></td>(.*?)</tr>", survival)
    c = ref[(ref["task"] == "survival")]["value"]
    assert row and format_mean_std(c.mean(), c.std()) in row.group(1)
    assert page.count("planted truth (ceiling)</i></td>") == 2  # one row per task
    # a cohort without a planted truth: an empty reference.csv, no row
    evaluate(fc.results, fc.sheet, fc.splits, out["metrics"], out["summary"], out["comparisons"],
             model=list(MODELS), task=None, n_boot=20, seed=0, reference_out=tmp_path / "empty.csv")
    assert pd.read_csv(tmp_path / "empty.csv").empty
    report(fc.results, fc.sheet, fc.splits, out["metrics"], out["summary"], out["comparisons"],
           tmp_path / "without.html", reference=tmp_path / "empty.csv", **common)
    assert "planted truth" not in (tmp_path / "without.html").read_text(encoding="utf-8")


def test_the_kaplan_meier_null_is_never_the_best_model() -> None:
    """ibs_km is a model-free reference: bolding the model whose test folds happen to give the
    null a lower IBS would read as that model being best."""
    from duopath.report.html import _best_models

    summ = pd.DataFrame({"model": ["a", "b", "a", "b"], "metric": ["ibs_km", "ibs_km", "ibs", "ibs"],
                         "mean": [0.227, 0.228, 0.20, 0.19]}).set_index(["model", "metric"])
    assert _best_models(summ, ["a", "b"], "ibs_km") == set()
    assert _best_models(summ, ["a", "b"], "ibs") == {"b"}
