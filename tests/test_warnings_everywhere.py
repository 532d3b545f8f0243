"""Issue 19, kinds 8 and 9: every warning reaches every output mode, and a class absent from the
test data is marked absent, never scored 0."""
from __future__ import annotations

import json
import shutil

import pytest

from inspector.cli import main
from inspector.evaluation import ClassificationEvaluation, evaluate_predictions
from inspector.summary import RunSummary


def _json_tail(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


# -- kind 8: warnings ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def three_good(tiny_data, tmp_path_factory):
    """3 good images and a defect class: too few good images for a 1 % false-reject guarantee."""
    root = tmp_path_factory.mktemp("three-good") / "data"
    (root / "ok").mkdir(parents=True)
    for f in sorted((tiny_data / "ok").iterdir())[:3]:
        shutil.copy(f, root / "ok" / f.name)
    shutil.copytree(tiny_data / "scratch", root / "scratch")
    return root


@pytest.mark.parametrize("as_json", [False, True], ids=["plain", "json"])
def test_anomaly_train_prints_the_guarantee_warning_in_every_mode(three_good, tmp_path, capsys, as_json):
    argv = ["train", str(three_good), "--task", "anomaly", "--target-frr", "0.01", "--image-size", "96",
            "--orientation-matters", "--runs-dir", str(tmp_path / "runs"), *(["--json"] if as_json else [])]
    assert main(argv) == 0
    out = capsys.readouterr()
    warned = [line for line in out.err.splitlines() if line.startswith("warning: ") and "guaranteed" in line]
    assert len(warned) == 1, out.err
    assert "25" in warned[0] and "96" in warned[0]  # the lowest guaranteed rate, the images to add
    if as_json:
        result = _json_tail(out.out)
        assert result["frr_warning"] and result["frr_warning"] in warned[0]  # the key stays
        assert result["frr_warning"] in result["warnings"]
        # predict with that run says it too, in plain mode
        assert main(["predict", result["run_dir"], str(three_good / "scratch")]) == 0
        assert "warning: " in capsys.readouterr().err


def test_run_summary_gathers_every_warning():
    anomaly = RunSummary(task="anomaly", metrics={"frr_warning": "add at least 96 images", "n_good": 3})
    assert anomaly.warnings == ["add at least 96 images"]
    wide = RunSummary(metrics={"val_accuracy": 0.7, "val_accuracy_ci": [0.4, 0.9]})
    assert len(wide.warnings) == 1 and "too wide to trust" in wide.warnings[0]
    assert RunSummary(metrics={"val_accuracy": 0.9, "val_accuracy_ci": [0.85, 0.95]}).warnings == []


# -- kind 9: absent classes ------------------------------------------------------------------------

@pytest.fixture
def empty_ok(tiny_data, tmp_path):
    """The test folder of the tiny classes with its ok/ folder empty."""
    root = tmp_path / "test"
    shutil.copytree(tiny_data, root)
    for f in (root / "ok").iterdir():
        f.unlink()
    return root


def test_evaluate_table_marks_an_empty_class_absent_not_zero(tiny_run, empty_ok, capsys):
    assert main(["evaluate", str(tiny_run.run_dir), str(empty_ok)]) == 0
    out = capsys.readouterr()
    row = next(line for line in out.out.splitlines() if line.split() and line.split()[0] == "ok")
    assert "absent" in row and "0.00" not in row, out.out
    assert "warning: " in out.err and "ok" in out.err
    assert "absent" in out.out.splitlines()[0] or any("absent from the data" in ln for ln in out.out.splitlines())


def test_evaluate_json_keeps_support_zero_and_scores_nothing(tiny_run, empty_ok, capsys):
    assert main(["evaluate", str(tiny_run.run_dir), str(empty_ok), "--json"]) == 0
    out = capsys.readouterr()
    report = _json_tail(out.out)
    assert report["per_class"]["ok"]["support"] == 0
    assert report["per_class"]["ok"]["f1"] is None and report["per_class"]["ok"]["recall"] is None
    assert any("ok" in w for w in report["warnings"])
    assert "warning: " in out.err


def test_absent_classes_are_not_scored_and_old_reports_read_as_absent():
    report = evaluate_predictions([1, 1, 2], [0, 1, 2], ["ok", "scratch", "dent"])
    assert report["per_class"]["ok"] == {"precision": None, "recall": None, "f1": None, "support": 0}
    assert report["macro_f1"] == pytest.approx((2 / 3 + 1) / 2)
    typed = ClassificationEvaluation.from_dict(report)
    assert typed.per_class["ok"].absent and typed.per_class["ok"].f1 is None
    assert ClassificationEvaluation.from_dict(typed.to_dict()) == typed
    old = {**report, "per_class": {**report["per_class"],
                                   "ok": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}}}
    assert ClassificationEvaluation.from_dict(old).per_class["ok"].f1 is None


def test_the_compare_chart_shows_an_absent_class_as_absent_not_zero():
    from ui.charts import per_class_f1

    fig = per_class_f1({"a": {"ok": None, "dent": 0.5}, "b": {"ok": None, "dent": 1.0}})
    assert all(t.y[0] is None for t in fig.data) and "absent" in fig.data[0].x[0]
    fig = per_class_f1({"a": {"ok": None, "dent": 0.5}, "b": {"ok": 0.4, "dent": 1.0}})
    assert fig.data[0].y[0] is None and "absent: ok" in fig.data[0].name and fig.data[1].y[0] == 0.4
