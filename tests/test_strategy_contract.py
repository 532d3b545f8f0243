"""The strategy contract (see `Strategy`'s docstring), checked over every registered strategy in
the style of scikit-learn's check_estimator, plus a plugin registered from outside the package."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from inspector import Predictor, RunStore, Strategy, TrainConfig, register_strategy, train
from inspector.engine import EpochEnd, FeatureCache, FitOutcome, StepEnd
from inspector.errors import InspectorError
from inspector.tasks.classification import STRATEGIES

FAST = dict(image_size=96, seed=3, max_folds=2, batch_size=8)


@pytest.fixture(scope="module")
def unseen_parts() -> list[tuple[np.ndarray, str]]:
    """Fresh draws of the tiny classes that no model trained on: 6 per class."""
    from inspector.sample_data import render_image

    rng = np.random.default_rng(2024)
    return [(render_image(label, rng), label) for label in ("crack", "ok", "scratch") for _ in range(6)]


def camera_b(image: np.ndarray) -> np.ndarray:
    """The shift a second camera makes (the test's own): darker, lower contrast, softer, noisier."""
    from PIL import Image, ImageFilter

    soft = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(1.2)), dtype=np.float64)
    noise = np.random.default_rng(int(image.sum()) % 2**32).normal(0, 4, image.shape)
    return np.clip(0.6 * soft + 20 + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def other_line(tmp_path_factory) -> dict:
    """A transfer strategy's data: this line (the test's second camera) with 4 labelled images per class and
    12 unlabelled ones, the source being tiny_data's camera; and this line's unseen parts."""
    from PIL import Image

    from inspector.sample_data import render_image

    rng = np.random.default_rng(99)
    root = tmp_path_factory.mktemp("line_b")
    for label in ("crack", "ok", "scratch"):
        (root / "labelled" / label).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(camera_b(render_image(label, rng))).save(root / "labelled" / label / f"{i}.png")
        (root / "unlabelled" / "shift1").mkdir(parents=True, exist_ok=True)
        for i in range(4):
            Image.fromarray(camera_b(render_image(label, rng))).save(root / "unlabelled" / "shift1" / f"{label}{i}.png")
    unseen = [(camera_b(render_image(label, rng)), label) for label in ("crack", "ok", "scratch") for _ in range(6)]
    return {"data": root / "labelled", "unlabeled": root / "unlabelled", "unseen": unseen}


def check_trains_reproducibly_and_beats_chance(strategy: str, data, unseen_parts, tmp_path, **domains) -> None:
    config = TrainConfig(strategy=strategy, epochs=4, **FAST)
    events: list = []
    first = train(data, config, runs_dir=tmp_path / "a", callbacks=[events.append], **domains)
    second = train(data, config, runs_dir=tmp_path / "b", **domains)
    assert first.status == second.status == "completed"
    assert (first.run_dir / "model.safetensors").is_file(), "the trainer saves every completed model"
    final_epochs = [e.epoch for e in events if isinstance(e, EpochEnd) and e.fold == "final"]
    assert final_epochs == sorted(set(final_epochs)) and final_epochs, f"one EpochEnd per epoch: {final_epochs}"
    images = [image for image, _ in unseen_parts]
    predictor = Predictor.from_run(first.run_dir)
    p1, p2 = predictor.predict_proba(images), Predictor.from_run(second.run_dir).predict_proba(images)
    assert p1.shape == (len(images), 3)
    np.testing.assert_allclose(p1.sum(1), 1.0, atol=1e-4)
    # Same seed, same model: up to float rounding of multi-threaded CPU kernels.
    np.testing.assert_allclose(p1, p2, atol=2e-3)
    assert first.val_accuracy == second.val_accuracy
    truth = np.array([predictor.classes.index(label) for _, label in unseen_parts])
    accuracy = float((p1.argmax(1) == truth).mean())
    assert accuracy >= 0.5, f"{strategy}: {accuracy:.2f} on unseen parts, chance is 0.33"


def check_stops_within_a_batch(strategy: str, data, tmp_path, **domains) -> None:
    stop, after_stop = threading.Event(), []

    def stop_at_first_batch(event) -> None:
        if isinstance(event, StepEnd):
            if stop.is_set():
                after_stop.append(event)
            stop.set()

    # A fresh feature cache: with the images' features already cached there would be no batch to stop in.
    result = train(data, TrainConfig(strategy=strategy, epochs=30, **FAST), runs_dir=tmp_path,
                   callbacks=[stop_at_first_batch], stop_event=stop, feature_cache=FeatureCache(), **domains)
    assert result.status == "stopped"
    assert len(after_stop) <= 1, f"{strategy} ran {len(after_stop)} batches after the stop request"
    assert RunStore(tmp_path).list_runs()[0].status == "stopped"


@pytest.mark.slow
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_strategy_contract(strategy, tiny_data, unseen_parts, other_line, tmp_path):
    if getattr(STRATEGIES[strategy], "transfer", False):
        # A transfer strategy learns this line from the other line (tiny_data) and this line's few images,
        # refuses in plain words without the other line, and is judged on this line's unseen parts.
        with pytest.raises(InspectorError, match="another line"):
            train(other_line["data"], TrainConfig(strategy=strategy, **FAST), runs_dir=tmp_path / "none")
        domains = {"source": tiny_data, "unlabeled": other_line["unlabeled"]}
        check_trains_reproducibly_and_beats_chance(strategy, other_line["data"], other_line["unseen"], tmp_path,
                                                   **domains)
        check_stops_within_a_batch(strategy, other_line["data"], tmp_path / "stop", **domains)
        return
    check_trains_reproducibly_and_beats_chance(strategy, tiny_data, unseen_parts, tmp_path)
    check_stops_within_a_batch(strategy, tiny_data, tmp_path / "stop")


class NearestMean(Strategy):
    """A plugin written outside the package: the linear layer scores each class by closeness to its
    mean pooled feature vector (nearest centroid)."""

    name = "test_nearest_mean"
    summary = "Nearest class mean on frozen features (a test plugin)."
    default_epochs = 1
    architecture = "multiscale"

    def fit(self, model, train, val, ctx):
        from inspector.augment import build_transform

        transform = build_transform(ctx.preprocessing, "none")
        rows = []
        model.eval()
        with torch.no_grad():
            for step, image in enumerate(train.images, start=1):
                ctx.check_stop()
                rows.append(model.pooled_features(transform(image).unsqueeze(0))[0])
                ctx.emit(StepEnd(ctx.run_id, phase="features", step=step, steps=len(train), epoch=0, lr=None,
                                 images_per_s=1.0, elapsed_s=ctx.elapsed, fold=ctx.fold))
        features = torch.stack(rows)
        means = torch.stack([features[torch.as_tensor(train.labels == k)].mean(0) for k in range(len(ctx.classes))])
        head = model.get_classifier()
        with torch.no_grad():  # -|x - m|^2 / 2 = x.m - |m|^2 / 2 + (a term shared by all classes)
            head.weight.copy_(means * 10)
            head.bias.copy_(-(means ** 2).sum(1) * 5)
        probs = None
        if val is not None:
            with torch.no_grad():
                probs = torch.softmax(model(torch.stack([transform(i) for i in val.images])), 1).numpy()
        ctx.emit(EpochEnd(ctx.run_id, epoch=1, epochs=1, train_loss=0.0, val_loss=None, val_accuracy=None,
                          val_macro_f1=None, lr=None, images_per_s=1.0, elapsed_s=ctx.elapsed, eta_s=0.0,
                          device="cpu", device_memory_mb=None, fold=ctx.fold))
        return FitOutcome(model, 1, probs)


class ForgetsItsModel(NearestMean):
    name = "test_forgets_its_model"

    def fit(self, model, train, val, ctx):
        return FitOutcome(model, None, None)  # "completed" without a model: the trainer must refuse


@pytest.fixture
def plugins():
    for cls in (NearestMean, ForgetsItsModel):
        register_strategy(cls)
    yield
    for cls in (NearestMean, ForgetsItsModel):
        STRATEGIES.pop(cls.name, None)


@pytest.mark.slow
def test_a_plugin_strategy_from_outside_the_package_meets_the_contract(plugins, tiny_data, unseen_parts, tmp_path):
    check_trains_reproducibly_and_beats_chance("test_nearest_mean", tiny_data, unseen_parts, tmp_path)
    check_stops_within_a_batch("test_nearest_mean", tiny_data, tmp_path / "stop")


def test_a_strategy_that_returns_no_model_fails_the_run(plugins, tiny_data, tmp_path):
    with pytest.raises(InspectorError, match="finished without a model"):
        train(tiny_data, TrainConfig(strategy="test_forgets_its_model", **FAST), runs_dir=tmp_path)
    info = RunStore(tmp_path).list_runs()[0]
    assert info.status == "failed" and not info.has_model


def test_lp_ft_reports_each_epoch_once_and_keeps_its_checkpoint(tiny_data, tmp_path):
    events: list = []
    result = train(tiny_data, TrainConfig(strategy="lp_ft", epochs=2, cross_validate=False, **FAST),
                   runs_dir=tmp_path, callbacks=[events.append])
    epochs = [e.epoch for e in events if isinstance(e, EpochEnd)]
    assert epochs == [1, 2]
    assert result.status == "completed" and (result.run_dir / "model.safetensors").is_file()
