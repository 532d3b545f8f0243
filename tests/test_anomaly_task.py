"""The anomaly task end to end: trained from good images only, a threshold that keeps its promise,
readable scores, the OK/NG gate with a classifier, plain errors, and the CLI's JSON contracts."""
from __future__ import annotations

import json

import numpy as np
import pytest

from inspector import TrainConfig, train
from inspector.cli import main
from inspector.errors import InspectorError
from inspector.inference import load_predictor
from inspector.runs import Run

FAST = dict(task="anomaly", image_size=96, any_orientation=False, seed=0)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """Generated parts: train/<class> (4 per class), good_parts/ok (30), new_parts (5)."""
    from inspector.sample_data import generate_sample_data

    return generate_sample_data(tmp_path_factory.mktemp("parts"), seed=5, images_per_class=4, new_parts=5,
                                good_parts=30)


@pytest.fixture(scope="module")
def anomaly_run(parts, tmp_path_factory):
    """Trained on the 4 good images of train/ plus 20 good parts; the defect classes only validate."""
    import shutil

    data = tmp_path_factory.mktemp("data")
    shutil.copytree(parts / "train", data, dirs_exist_ok=True)
    for path in sorted((parts / "good_parts" / "ok").iterdir())[:20]:
        shutil.copy(path, data / "ok" / f"extra_{path.name}")  # train/ok uses the same names
    return train(data, TrainConfig(**FAST), runs_dir=tmp_path_factory.mktemp("runs"))


def test_trains_from_good_images_only_and_validates_on_the_defects(anomaly_run):
    assert anomaly_run.status == "completed" and anomaly_run.task == "anomaly"
    metrics = anomaly_run.summary.metrics
    assert metrics["n_good"] == 24 and metrics["n_defect"] == 16  # 4 defect classes x 4: never trained on
    recipe = json.loads((anomaly_run.run_dir / "model.json").read_text())
    assert recipe["task"] == "anomaly" and recipe["ok_classes"] == ["ok"]
    assert recipe["detector"]["n_train"] == 24
    assert metrics["val_auroc"] > 0.7  # the generated defects are visible; chance is 0.5
    evaluation = Run(anomaly_run.run_dir).evaluation()
    assert len(evaluation["good_scores"]) == 24 and len(evaluation["defects"]) == 16


def test_scores_read_half_exactly_at_the_threshold_and_rise_with_distance(anomaly_run):
    predictor = load_predictor(anomaly_run.run_dir)
    assert predictor.scale.readable(predictor.threshold) == 0.5
    raw = np.linspace(predictor.threshold * 0.5, predictor.threshold * 1.5, 50)
    assert np.all(np.diff(predictor.scale.readable(raw)) > 0)
    looser = predictor.with_target_frr(0.3)
    assert looser.threshold <= predictor.threshold  # a higher false-reject target: a lower threshold


def test_false_reject_rate_on_new_good_parts_stays_near_the_target(parts, tmp_path):
    """Calibrated on 24 good parts at target 0.1 (guaranteed on average over calibration sets); one
    set is one draw, so the check allows for its spread: 30 new good parts, at most 9 rejected."""
    import shutil

    data = tmp_path / "good"
    (data / "ok").mkdir(parents=True)
    goods = sorted((parts / "good_parts" / "ok").iterdir())
    for path in goods[:24]:
        shutil.copy(path, data / "ok")
    result = train(data, TrainConfig(**{**FAST, "target_frr": 0.1}), runs_dir=tmp_path / "runs")
    from inspector.sample_data import render_image

    rng = np.random.default_rng(77)
    fresh = [render_image("ok", rng) for _ in range(30)]
    rejected = sum(not p.ok for p in load_predictor(result.run_dir).predict_batch(fresh))
    assert rejected <= 9, f"{rejected} of 30 new good parts rejected at a 0.1 target"


def test_the_gate_names_the_defect_type_with_a_classifier(anomaly_run, tiny_run, parts, capsys):
    images = [str(p) for p in sorted((parts / "new_parts").iterdir())]
    assert main(["predict", str(anomaly_run.run_dir), *images, "--classifier", str(tiny_run.run_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["task"] == "anomaly" and len(out["predictions"]) == len(images)
    for row in out["predictions"]:
        assert {"path", "score", "raw_score", "verdict", "defect_type"} <= set(row)
        unlike = (row.get("reason") or "").startswith("unlike the training images")  # the familiarity guard
        assert row["verdict"] == ("UNSURE" if unlike else "NG" if row["score"] > 0.5 else "OK")
        assert row["defect_type"] in ("crack", "ok", "scratch")


def test_cli_contracts_for_train_and_evaluate(parts, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["train", str(parts / "good_parts"), "--task", "anomaly", "--image-size", "96",
                 "--orientation-matters", "--runs-dir", str(runs), "--json"]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"run_id", "run_dir", "task", "backbone", "n_good", "threshold", "target_frr", "val_auroc",
            "train_seconds", "skipped"} <= set(trained)
    assert trained["task"] == "anomaly" and trained["n_good"] == 30 and trained["val_auroc"] is None
    assert main(["evaluate", trained["run_dir"], str(parts / "train"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"task", "auroc", "false_reject_rate", "detection_rate", "n_good", "n_defect",
            "detection_rate_per_class"} <= set(report)
    assert report["n_good"] == 4 and report["n_defect"] == 16
    assert set(report["detection_rate_per_class"]) == {"crack", "dent", "scratch", "stain"}


@pytest.mark.parametrize("config, message", [
    (dict(ok_classes=("nope",)), "not in the data"),
    (dict(strategy="fine_tune"), "one strategy"),
])
def test_bad_settings_give_plain_errors(parts, tmp_path, config, message):
    with pytest.raises(InspectorError, match=message):
        train(parts / "train", TrainConfig(**{**FAST, **config}), runs_dir=tmp_path)


def test_bad_data_gives_plain_errors(parts, tmp_path):
    with pytest.raises(InspectorError, match="recognisably the good parts"):
        train([(p, name) for name in ("crack", "dent") for p in (parts / "train" / name).iterdir()],
              TrainConfig(**FAST), runs_dir=tmp_path)
    with pytest.raises(InspectorError, match="at least 2 good images"):
        train([(next((parts / "train" / "ok").iterdir()), "ok")], TrainConfig(**FAST), runs_dir=tmp_path)
    with pytest.raises(InspectorError, match="false-reject rate must be between 0 and 1"):
        TrainConfig(**{**FAST, "target_frr": 1.5})
    from inspector import RunStore

    assert RunStore(tmp_path).list_runs() == []  # user mistakes are refused before a run folder is made
