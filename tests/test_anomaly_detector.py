"""The anomaly detector's core: fit on good images only, calibrated threshold, readable scores, maps.

Synthetic images only (striped textures; defects are dark spots), small inputs, so every test
runs in seconds on two CPU cores.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from inspector.errors import InspectorError
from inspector.tasks.anomaly.calibration import (ScoreScale, calibrate, conformal_threshold,
                                                 frr_guarantee_message, min_guaranteed_frr)
from inspector.tasks.anomaly.detector import DetectorConfig, PatchDetector, dihedral_views, greedy_coreset
from inspector.tasks.anomaly.maps import anomaly_map, normalise_map

SIZE = 64


def texture(rng: np.random.Generator, defect: bool = False, size: int = 80) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    grey = 128 + 40 * np.sin(x / 3.0 + rng.uniform(0, 6)) + rng.normal(0, 8, (size, size))
    if defect:
        cy, cx = rng.integers(18, size - 18, 2)
        grey[(y - cy) ** 2 + (x - cx) ** 2 < 30] = 15
    return np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return {"train": [texture(rng) for _ in range(6)],
            "good": [texture(rng) for _ in range(5)],
            "bad": [texture(rng, defect=True) for _ in range(5)]}


@pytest.fixture(scope="module")
def fitted(images):
    return PatchDetector(DetectorConfig(image_size=SIZE, max_bank=300, coreset_ratio=1.0, batch_size=8)).fit(images["train"])


# -- detector --------------------------------------------------------------------------------
def test_fit_on_good_only_scores_defects_above_good(fitted, images):
    good, good_maps = fitted.score(images["good"])
    bad, bad_maps = fitted.score(images["bad"])
    assert good.shape == (5,) and len(good_maps) == 5 and good_maps[0].ndim == 2
    assert bad.min() > good.max(), (good, bad)
    assert np.allclose(bad, np.stack(bad_maps).reshape(5, -1).max(1))  # image score = largest patch distance
    assert fitted.memory_bank_.shape[0] == 300  # coreset kept max_bank patches
    assert fitted.n_train_ == 6


def test_embed_shape_and_progress(fitted, images):
    calls = []
    feats = fitted.embed(images["good"], on_batch=lambda done, total: calls.append((done, total)))
    assert feats.shape[0] == 5 and feats.shape[-1] == 40 + 112  # lite0 stages 2 + 3
    assert tuple(feats.shape[1:3]) == fitted.feature_hw_
    assert calls and calls[-1] == (5, 5)


def test_progress_callback_can_stop(fitted, images):
    class Stop(Exception):
        pass

    def stop(done, total):
        raise Stop

    with pytest.raises(Stop):
        fitted.score(images["good"] * 3, on_batch=stop)


def test_out_of_sample_scores_embed_once_and_fit(images):
    det = PatchDetector(DetectorConfig(image_size=SIZE, max_bank=300, batch_size=8))
    calls = []
    scores = det.out_of_sample_scores(images["train"], folds=3, on_batch=lambda d, t: calls.append(t), fit=True)
    assert scores.shape == (6,) and np.all(np.isfinite(scores)) and np.all(scores > 0)
    assert sum(1 for _ in calls) == 1 and calls[0] == 6  # one pass over the 6 images
    assert hasattr(det, "memory_bank_")
    bad, _ = det.score(images["bad"])
    assert bad.min() > scores.max()


def test_state_round_trip_gives_identical_scores(fitted, images):
    config = json.loads(json.dumps(fitted.state_config()))  # JSON-able
    tensors = fitted.state_tensors()
    assert all(isinstance(t, torch.Tensor) for t in tensors.values())
    again = PatchDetector.from_state(config, tensors)
    a, amap = fitted.score(images["bad"])
    b, bmap = again.score(images["bad"])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(amap, bmap)


@pytest.mark.slow  # two detectors and 8 views per image: ~14 s on 2 idle-ish cores, more when loaded
def test_symmetric_bank_covers_turned_parts():
    rng = np.random.default_rng(3)
    train = [texture(rng) for _ in range(2)]
    turned = [np.ascontiguousarray(np.rot90(texture(rng))) for _ in range(2)]  # stripes now run across
    plain = PatchDetector(DetectorConfig(image_size=SIZE, max_bank=100_000, coreset_ratio=1.0)).fit(train)
    sym = PatchDetector(DetectorConfig(image_size=SIZE, max_bank=100_000, coreset_ratio=1.0, symmetric=True)).fit(train)
    assert sym.memory_bank_.shape[0] == 8 * plain.memory_bank_.shape[0]
    assert sym.score(turned)[0].max() < plain.score(turned)[0].min()


def test_dihedral_views_are_the_eight_distinct_symmetries():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    views = dihedral_views(image)
    assert len(views) == 8 and np.array_equal(views[0], image)
    assert len({v.tobytes() + bytes(v.shape) for v in views}) == 8


def test_greedy_coreset_covers_clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 50, (5, 8))
    points = torch.tensor(np.concatenate([c + rng.normal(0, 0.1, (200, 8)) for c in centres]), dtype=torch.float32)
    idx = greedy_coreset(points, 5, projection_dim=0)
    assert len(set((idx // 200).tolist())) == 5  # one pick in every cluster


def test_config_json_round_trip_and_validation():
    config = DetectorConfig(image_size=128, layers=(1, 2), symmetric=True)
    assert DetectorConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(InspectorError, match="odd"):
        DetectorConfig(neighbourhood=2)
    with pytest.raises(InspectorError, match="Unknown anomaly detector settings"):
        DetectorConfig.from_dict({"bogus": 1})


# -- bad inputs ------------------------------------------------------------------------------
def test_bad_inputs_raise_plain_errors(fitted, images):
    with pytest.raises(InspectorError, match="No good images"):
        PatchDetector(DetectorConfig(image_size=SIZE)).fit([])
    with pytest.raises(InspectorError, match="At least 2 good images"):
        fitted.out_of_sample_scores(images["train"][:1])
    with pytest.raises(InspectorError, match="not an RGB picture"):
        fitted.score([np.zeros((32, 32), dtype=np.uint8)])
    with pytest.raises(InspectorError, match="not been trained"):
        PatchDetector(DetectorConfig(image_size=SIZE)).score(images["good"])
    with pytest.raises(InspectorError, match="feature stages"):
        PatchDetector(DetectorConfig(image_size=SIZE, layers=(2, 9)))
    for target in (0, 1, -0.1, 1.5, float("nan")):
        with pytest.raises(InspectorError, match="between 0 and 1"):
            conformal_threshold(np.ones(10), target)
    with pytest.raises(InspectorError, match="No good images were scored"):
        calibrate(np.array([]), 0.05)


# -- calibration -----------------------------------------------------------------------------
def test_conformal_threshold_is_the_right_order_statistic():
    scores = np.arange(1.0, 33.0)  # n = 32
    assert conformal_threshold(scores[::-1], 0.05) == 32.0  # ceil(33 * 0.95) = 32nd smallest
    assert conformal_threshold(scores, 0.25) == 25.0  # ceil(33 * 0.75) = 25
    assert conformal_threshold(np.arange(1.0, 20.0), 0.05) == 19.0  # n = 19: exactly enough
    assert conformal_threshold(np.arange(1.0, 5.0), 0.05) == 4.0  # too few: the largest score


@pytest.mark.parametrize("target", [0.05, 0.1, 0.2])
def test_conformal_false_reject_rate_holds_on_iid_good_scores(target):
    rng = np.random.default_rng(42)
    trials, n = 2000, 32
    calibration = rng.gamma(3.0, 2.0, (trials, n))  # skewed, like distances
    new_good = rng.gamma(3.0, 2.0, (trials, 500))
    frr = np.array([(new_good[i] > conformal_threshold(calibration[i], target)).mean() for i in range(trials)])
    assert frr.mean() <= target + 0.005, frr.mean()
    assert frr.mean() >= target - 0.04  # and it is not needlessly strict


def test_guarantee_message():
    assert min_guaranteed_frr(19) == pytest.approx(0.05)
    assert frr_guarantee_message(19, 0.05) is None
    assert frr_guarantee_message(100, 0.05) is None
    message = frr_guarantee_message(16, 0.05)
    assert message is not None and "16 good images" in message and "5.9%" in message and "19" in message


def test_readable_score_is_half_at_threshold_and_monotone():
    rng = np.random.default_rng(1)
    scores = rng.gamma(3.0, 2.0, 40)
    scale = calibrate(scores, 0.05)
    assert scale.threshold == conformal_threshold(scores, 0.05)
    assert scale.readable(scale.threshold) == 0.5
    raw = np.linspace(scale.threshold - 5 * scale.scale, scale.threshold + 5 * scale.scale, 1001)
    out = scale.readable(raw)
    assert np.all(np.diff(out) > 0) and out.min() >= 0 and out.max() <= 1
    assert scale.readable(np.median(scores)) == pytest.approx(0.25)
    assert ScoreScale.from_dict(json.loads(json.dumps(scale.to_dict()))) == scale
    stricter = calibrate(scores, 0.2)  # another target, no retraining: only the scores are needed
    assert stricter.threshold < scale.threshold
    assert calibrate(np.full(10, 3.0), 0.05).readable(3.0) == 0.5  # degenerate spread still works


# -- maps --------------------------------------------------------------------------------------
def test_anomaly_map_is_at_image_size_and_peaks_at_the_defect():
    patch = np.zeros((8, 8), dtype=np.float32)
    patch[2, 5] = 10.0
    m = anomaly_map(patch, (100, 160), sigma=4)
    assert m.shape == (100, 160) and m.dtype == np.float32
    y, x = np.unravel_index(np.argmax(m), m.shape)
    assert 20 <= y <= 40 and 90 <= x <= 120  # patch (2, 5) of 8 covers rows 25-37, columns 100-120
    assert anomaly_map(patch, (100, 160), sigma=0).max() == pytest.approx(10.0, rel=0.05)
    scale = ScoreScale(threshold=5.0, scale=1.0)
    readable = normalise_map(m, scale)
    assert readable.shape == m.shape and np.all((readable >= 0) & (readable <= 1))
    assert normalise_map(np.array([[5.0]]), scale)[0, 0] == 0.5


def test_detector_map_points_at_the_spot(fitted):
    rng = np.random.default_rng(5)
    image = texture(rng)
    image[45:55, 20:30] = 10  # a dark spot below and left of the centre
    _, maps = fitted.score([image])
    m = anomaly_map(maps[0], image.shape[:2])
    assert m[50, 25] >= np.percentile(m, 90)  # the spot is among the hottest tenth of the map
    assert m[50, 25] > 2 * np.percentile(m[:, 50:], 50)  # far hotter than the untouched right half


def test_bad_map_inputs():
    with pytest.raises(InspectorError):
        anomaly_map(np.zeros(5), (10, 10))
    with pytest.raises(InspectorError):
        anomaly_map(np.zeros((4, 4)), (0, 10))
