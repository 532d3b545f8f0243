"""End-to-end training through the public API, on generated data, on the CPU."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from inspector import Predictor, RunStore, TrainConfig, train
from inspector.engine.events import CheckpointSaved, EpochEnd, StepEnd, TrainEnd, TrainStart
from inspector.errors import InspectorError
from inspector.tasks.classification import choose_strategy

FAST = dict(image_size=96, seed=3, max_folds=2)


def test_linear_probe_run_is_stored_and_beats_chance(tiny_run):
    assert tiny_run.status == "completed"
    assert tiny_run.strategy == "linear_probe"
    files = {p.name for p in tiny_run.run_dir.iterdir()}
    assert {"run.json", "config.json", "metrics.jsonl", "model.safetensors", "model.json", "evaluation.json"} <= files
    assert "cross-validation" in tiny_run.validation  # 8 images per class: no single hold-out split
    assert tiny_run.val_accuracy > 0.6  # chance is 1/3
    low, high = tiny_run.evaluation.accuracy_ci
    assert low <= tiny_run.val_accuracy <= high


def test_predictor_reloads_the_run_and_predicts(tiny_run, tiny_data):
    predictor = Predictor.from_run(tiny_run.run_dir)
    assert predictor.classes == ["crack", "ok", "scratch"]
    images = sorted((tiny_data / "scratch").iterdir())[:3]
    predictions = predictor.predict_batch(images)
    for p in predictions:
        assert p.label in predictor.classes
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    heat = predictor.heatmap(images[0])
    from PIL import Image

    width, height = Image.open(images[0]).size
    assert heat.shape == (height, width)
    assert 0.0 <= heat.min() and heat.max() <= 1.0 and heat.max() > 0.5


def test_events_arrive_in_order_with_live_metrics(tiny_data, tmp_path):
    events = []
    train(tiny_data, TrainConfig(strategy="fine_tune", epochs=2, batch_size=8, **FAST), runs_dir=tmp_path,
          callbacks=[events.append])
    assert isinstance(events[0], TrainStart) and isinstance(events[-1], TrainEnd)
    epochs = [e for e in events if isinstance(e, EpochEnd) and e.fold == "final"]
    assert [e.epoch for e in epochs] == [1, 2]
    assert all(e.train_loss > 0 and e.images_per_s > 0 and e.device == "cpu" for e in epochs)
    assert epochs[0].lr > epochs[1].lr >= 0  # warm-up then cosine decay to zero
    assert any(isinstance(e, StepEnd) for e in events)
    assert any(isinstance(e, CheckpointSaved) for e in events)
    stored = RunStore(tmp_path).list_runs()[0]
    from inspector.runs import Run

    assert [e["event"] for e in Run(stored.path).events()][0] == "TrainStart"


def test_stop_request_ends_training_and_keeps_a_usable_model(tiny_data, tmp_path):
    stop = threading.Event()

    def stop_after_first_checkpoint(event):
        if isinstance(event, CheckpointSaved):
            stop.set()

    result = train(tiny_data, TrainConfig(strategy="fine_tune", epochs=30, batch_size=8, **FAST),
                   runs_dir=tmp_path, callbacks=[stop_after_first_checkpoint], stop_event=stop)
    assert result.status == "stopped"
    info = RunStore(tmp_path).list_runs()[0]
    assert info.status == "stopped" and info.has_model
    prediction = Predictor.from_run(result.run_dir).predict(next((tiny_data / "ok").iterdir()))
    assert prediction.label in ("crack", "ok", "scratch")


def test_one_class_is_refused_before_any_run_is_made(tiny_data, tmp_path):
    with pytest.raises(InspectorError, match="at least two classes"):
        train([(p, "ok") for p in (tiny_data / "ok").iterdir()], TrainConfig(**FAST), runs_dir=tmp_path)
    assert RunStore(tmp_path).list_runs() == []


def test_auto_prefers_frozen_features_for_few_images_and_fine_tuning_with_many_on_gpu():
    assert choose_strategy(10, "cpu")[0] == "linear_probe"
    assert choose_strategy(500, "cuda")[0] == "fine_tune"
    assert "images" in choose_strategy(10, "cpu")[1]


def test_padded_batches_give_the_same_probabilities(tiny_run, tiny_data):
    from inspector.engine.predict import predict_probabilities

    predictor = Predictor.from_run(tiny_run.run_dir)
    images = sorted((tiny_data / "ok").iterdir())[:5]
    plain = predictor.predict_proba(images, batch_size=4)
    from inspector.engine.loaders import ImageSet
    from inspector.inference import as_rgb_array

    image_set = ImageSet([as_rgb_array(p) for p in images], np.zeros(5, dtype=np.int64), [""] * 5)
    padded = predict_probabilities(predictor.model, image_set, predictor._transform, predictor.device,
                                   batch_size=4, pad_batches=True)
    np.testing.assert_allclose(plain, padded, atol=1e-5)


def test_run_records_per_image_predictions_and_inference_speed(tiny_run):
    from inspector.runs import Run

    evaluation = Run(tiny_run.run_dir).evaluation()
    rows = evaluation["predictions"]
    assert len(rows) == evaluation["n_images"] == 24  # every image predicted once, out of fold
    assert {r["label"] for r in rows} == {"crack", "ok", "scratch"}
    assert sum(r["label"] == r["predicted"] for r in rows) / len(rows) == pytest.approx(evaluation["accuracy"])
    summary = Run(tiny_run.run_dir).info().summary
    assert summary.inference_ms_per_image > 0 and summary.best_epoch is not None


def test_without_cross_validation_one_fit_makes_the_model_and_no_accuracy_is_claimed(tiny_data, tmp_path):
    events = []
    result = train(tiny_data, TrainConfig(strategy="linear_probe", cross_validate=False, **FAST),
                   runs_dir=tmp_path, callbacks=[events.append])
    assert result.status == "completed" and result.evaluation is None and result.val_accuracy is None
    assert {e.fold for e in events if isinstance(e, EpochEnd)} == {"final"}  # no per-fold refits
    assert Predictor.from_run(result.run_dir).predict(next((tiny_data / "ok").iterdir())).label
