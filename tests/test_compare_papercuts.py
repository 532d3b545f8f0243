"""Issue 20: the Compare / Inspect / app-wide papercuts a new user met in the browser, each checked
where it was made (charts, the run store, the paired test, the anomaly overlay) and on the pages."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from inspector.engine import event_from_dict
from inspector.evidence.paired import compare_correctness, mcnemar_exact_ci, mcnemar_exact_p
from inspector.heatmap import overlay_heatmap
from inspector.runs import RunStore, best_run, display_name, unique_name
from inspector.tasks.anomaly.maps import THRESHOLD, anomaly_map

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 120


# -- a workspace with a real linear probe and a (copied) multi-epoch run ---------------------------
def _epoch(epoch: int, fold: str, **figures) -> dict:
    return {"event": "EpochEnd", "run_id": "x", "time": 0.0, "epoch": epoch, "epochs": 3, "fold": fold,
            "train_loss": 1.0 / epoch, "lr": 1e-3 / epoch, "val_loss": None, "val_accuracy": None,
            "val_macro_f1": None, "images_per_s": 10.0, "elapsed_s": 1.0, "eta_s": 0.0, "device": "cpu",
            "device_memory_mb": None, **figures}


def _fine_tune_events() -> list[dict]:
    """Three epochs of the kept model (trained on every image: no validation of its own) and three
    cross-validation folds with validation figures."""
    events = [_epoch(e, "final") for e in (1, 2, 3)]
    for k in (1, 2, 3):
        events += [_epoch(e, f"{k}/3", val_loss=1.0 / e, val_accuracy=0.5 + 0.1 * e + 0.01 * k,
                          val_macro_f1=0.4 + 0.1 * e) for e in (1, 2, 3)]
    return events


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_data):
    """runs/: "probe", a real linear probe (newest), and "tuned", a copy of it recorded as an older
    three-epoch fine-tune with the better accuracy."""
    from inspector import TrainConfig, train

    root = tmp_path_factory.mktemp("papercuts")
    shutil.copytree(tiny_data, root / "workspace" / "data")
    runs = root / "workspace" / "runs"
    probe = train(tiny_data, TrainConfig(strategy="linear_probe", image_size=64, seed=1, max_folds=3, name="probe"),
                  runs_dir=runs)
    probe_dir = Path(probe.run_dir)
    tuned = runs / "20200101-000000-tuned"
    shutil.copytree(probe_dir, tuned)
    record = json.loads((tuned / "run.json").read_text())
    record.update(run_id=tuned.name, name="tuned", strategy="fine_tune", created=record["created"] - 3600)
    record["summary"]["val_accuracy"] = 0.999
    (tuned / "run.json").write_text(json.dumps(record))
    (tuned / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in _fine_tune_events()))
    return root / "workspace"


@pytest.fixture
def pages_env(workspace, monkeypatch):
    monkeypatch.setenv("INSPECTOR_WORKSPACE", str(workspace))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.syspath_prepend(str(REPO))
    return workspace


def _page(name: str) -> AppTest:
    at = AppTest.from_file(str(REPO / name), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


# -- 1. curves of finished runs ----------------------------------------------------------------------
def test_finished_runs_show_their_validation_curves_without_ticking_anything():
    from ui import charts

    tuned = [event_from_dict(e) for e in _fine_tune_events()]
    fig = charts.curves({"tuned": tuned})
    middle = [t for t in fig.data if t.xaxis == "x2"]
    assert len(middle) == 2  # accuracy and macro-F1: the folds' mean, drawn without show_folds
    assert list(middle[0].y) == pytest.approx([0.62, 0.72, 0.82])  # mean of the 3 folds per epoch
    named = [t.name for t in fig.data if t.showlegend]
    assert named == ["tuned (validation: mean of 3 cross-validation folds)"]  # one entry per run
    assert not any("learning rate" in (t.name or "") for t in fig.data)  # lr: its own panel, not in the legend
    assert [t.xaxis for t in fig.data if t.line.dash == "solid" and t.yaxis == "y3"] == ["x3"]

    held_out = [event_from_dict(_epoch(e, "final", val_accuracy=0.9, val_macro_f1=0.8)) for e in (1, 2, 3)]
    fig = charts.curves({"held": held_out})
    assert [t.name for t in fig.data if t.showlegend] == ["held (validation: held-out images)"]


def test_a_run_without_epochs_shows_no_single_dot(pages_env):
    from ui import charts

    probe = [event_from_dict(e) for e in _probe_events(pages_env)]
    assert charts.fitted_in_one_step(probe)
    fig = charts.curves({"probe": probe, "tuned": [event_from_dict(e) for e in _fine_tune_events()]})
    assert {t.legendgroup for t in fig.data} == {"tuned"}  # the probe draws no one-point curve

    compare = _page("pages/3_Compare.py")
    compare.multiselect(key="compare_runs").set_value([_run_id(pages_env, "tuned"), _run_id(pages_env, "probe")]).run()
    assert not compare.exception
    assert len(compare.get("plotly_chart")) >= 1
    assert any("**probe**: fitted in one step, so no curves" in m.value for m in compare.markdown)
    assert any("mean of the cross-validation folds" in c.value for c in compare.caption)


def _probe_events(workspace: Path) -> list[dict]:
    path = Path(workspace) / "runs" / _run_id(workspace, "probe") / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _run_id(workspace: Path, name: str) -> str:
    return next(i.run_id for i in RunStore(Path(workspace) / "runs").list_runs() if i.name == name)


# -- 2. the anomaly map: the threshold at a fixed place, red past it ----------------------------------
def test_anomaly_overlay_is_red_exactly_past_the_threshold():
    image = np.full((20, 40, 3), 128, np.uint8)
    heat = np.zeros((20, 40), np.float32)
    heat[:, 20:] = THRESHOLD + 0.01  # just past: jet would draw it green
    heat[:, :20] = THRESHOLD - 0.01
    out = overlay_heatmap(image, heat, alpha=1.0, threshold=THRESHOLD)
    past, below = out[:, 30], out[:, 10]
    assert (past[:, 0] > 200).all() and (past[:, 1] < 60).all() and (past[:, 2] < 60).all()  # red
    assert not ((below[:, 0] > 200) & (below[:, 1] < 100)).any()  # not red below it
    plain = overlay_heatmap(image, heat, alpha=1.0)  # Grad-CAM keeps the plain scale
    assert plain[0, 30, 1] > 150  # green-ish at 0.51 on plain jet


def test_anomaly_map_peaks_at_the_images_score():
    """Smoothing lowers a lone hot patch; the map is stretched back so an NG part shows red."""
    patch = np.ones((8, 8), np.float32)
    patch[3, 3] = 5.0  # the image's score
    m = anomaly_map(patch, (128, 128), sigma=6)
    assert m.max() == pytest.approx(5.0, rel=1e-5) and m.min() == pytest.approx(1.0, abs=0.05)


# -- 3. the run table -----------------------------------------------------------------------------------
def test_compare_table_is_narrow_and_has_no_none(pages_env):
    compare = _page("pages/3_Compare.py")
    table = compare.dataframe[0].value
    assert list(table.columns)[0] == "run" and len(table.columns) <= 8, list(table.columns)
    assert not {"backbone", "strategy", "run id", "task"} & set(table.columns)
    assert not table.isna().any().any()
    assert not (table.astype(str) == "None").any().any()


def test_empty_cells_read_dash(pages_env, monkeypatch):
    """A running run (no figures yet) beside finished ones: its cells are "-", never "None"."""
    store = RunStore(Path(pages_env) / "runs")
    running = store.create({}, backbone="tf_efficientnet_lite0", strategy="fine_tune", name="still running")
    try:
        compare = _page("pages/3_Compare.py")
        table = compare.dataframe[0].value
        row = table[table["run"] == "still running"].iloc[0]
        assert "status" in table.columns and not table.isna().any().any()
        assert row["val accuracy"] == "-" and row["train (s)"] == "-"
    finally:
        shutil.rmtree(running.path)


# -- 4. the verdict and its interval: one procedure ---------------------------------------------------
def test_the_interval_leaves_out_zero_exactly_when_the_test_is_significant():
    for b in range(0, 26):
        for c in range(0, 26):
            n = b + c + 40
            low, high = mcnemar_exact_ci(b, c, n)
            significant = mcnemar_exact_p(b, c) < 0.05
            assert significant == (low > 0 or high < 0), (b, c, low, high)
            assert low <= (b - c) / n <= high


def test_no_significant_difference_never_stands_beside_an_interval_without_zero():
    a = np.r_[np.ones(90), np.zeros(10)].astype(bool)
    b = a.copy()
    b[:7] = False  # B wrong on 7 images A gets right, right on 2 it gets wrong: p = 0.18
    b[90:92] = True
    result = compare_correctness(a, b)
    assert result.verdict == "no_significant_difference" and 0.05 < result.p_value < 0.2
    low, high = result.difference_ci
    assert low <= 0 <= high
    assert "95% CI -" in result.sentence and "to +" in result.sentence


# -- 5. the best run first ------------------------------------------------------------------------------
def test_inspect_and_export_default_to_the_best_run(pages_env):
    infos = RunStore(Path(pages_env) / "runs").list_runs()
    assert infos[0].name == "probe" and best_run(infos).name == "tuned"  # newest is not best
    tuned = _run_id(pages_env, "tuned")
    inspect = _page("pages/4_Inspect.py")
    assert inspect.selectbox(key="model_a").value == tuned
    compare = _page("pages/3_Compare.py")
    assert compare.selectbox(key="export_run").value == tuned


def test_best_run_ranks_by_the_tasks_main_figure(tmp_path):
    store = RunStore(tmp_path)
    a = store.create({}, backbone="b", strategy="linear_probe")
    b = store.create({}, backbone="b", strategy="fine_tune")
    a.update(status="completed", summary={"val_accuracy": 0.9})
    b.update(status="failed", summary={})
    assert best_run(store.list_runs()).run_id == a.run_id
    assert best_run([]) is None


# -- 6. one naming rule --------------------------------------------------------------------------------
def test_one_naming_rule_and_unique_names(tmp_path):
    assert display_name("tf_efficientnet_lite0", "linear_probe") == "tf_efficientnet_lite0 / linear_probe"
    assert display_name("x", "patch_memory", ["x / patch_memory"]) == "x / patch_memory (2)"
    assert unique_name("a", ["a", "a (2)"]) == "a (3)"
    store = RunStore(tmp_path)
    first = store.create({}, backbone="x", strategy="linear_probe")
    second = store.create({}, backbone="x", strategy="linear_probe")
    named = store.create({}, backbone="x", strategy="fine_tune", name="x / linear_probe")
    names = {r.run_id: r.name for r in store.list_runs()}
    assert names[first.run_id] == "x / linear_probe" and names[second.run_id] == "x / linear_probe (2)"
    assert names[named.run_id] == "x / linear_probe (3)"
    assert store.rename(second.run_id, "x / linear_probe") == "x / linear_probe (2)"  # its own name is free
    assert store.rename(named.run_id, "x / linear_probe") == "x / linear_probe (3)"


def test_runs_stored_under_one_name_are_listed_apart(tmp_path):
    store = RunStore(tmp_path)
    older, newer = (store.create({}, backbone="x", strategy="s") for _ in range(2))
    newer.update(name="x / s", created=older.record()["created"] + 1)  # as an older version stored them
    older.update(name="x / s")
    names = {r.run_id: r.name for r in store.list_runs()}
    assert names == {older.run_id: "x / s", newer.run_id: "x / s (2)"}


# -- 7, 8, 9. icons, marks and the probability axis -----------------------------------------------------
def test_the_tab_icon_is_the_apps_own_image(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))
    import streamlit as st

    from ui import state

    seen = {}
    monkeypatch.setattr(st, "set_page_config", lambda **kw: seen.update(kw))
    monkeypatch.setattr(st, "page_link", lambda *a, **k: None)
    state.page_setup("Compare", ":material/compare:")
    assert seen["page_icon"] is state.app_icon() and seen["page_icon"].size == (64, 64)


def test_disagreement_marks_are_words_and_bundled_icons():
    from inspector.comparison import PairedPrediction
    from ui.evidence import paired_caption

    text = paired_caption(PairedPrediction("/d/ok/1.png", "ok", "ok", "dent", 0.9, 0.6))
    assert ":material/check: right" in text and ":material/close: wrong" in text
    assert not any(ord(ch) > 0x2000 for ch in text)  # no emoji, no symbol a font may lack


def test_probability_axis_spans_0_to_100_percent():
    from ui import charts

    layout = charts.probabilities({"ok": 0.7, "dent": 0.3}, {"ok"}).layout
    assert tuple(layout.xaxis.range) == (0, 1) and layout.xaxis.tickvals[-1] == 1
    assert layout.margin.r >= 30  # room for the "100%" label at the right end
