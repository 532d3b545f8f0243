"""The familiarity guard on synthetic features (inspector/runtime/familiarity.py) and its result rows."""
from __future__ import annotations

import json

import numpy as np
import pytest

from inspector.runtime.familiarity import (FamiliarityGuard, calibrated_limit, fit_guard, prediction_bound, read_guard,
                                           student_t_quantile)
from inspector.runtime.rows import describe, familiarity_row, familiarity_rows, guard_row


def clusters(n: int, seed: int, dims: int = 200, shift: float = 0.0) -> np.ndarray:
    """Features of `n` images from three classes on a low-dimensional structure plus noise (like pooled
    backbone features); `shift` moves them all by that many noise units along every feature."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(99).normal(size=(8, dims))
    centres = np.random.default_rng(98).normal(scale=3.0, size=(3, 8))
    latent = centres[rng.integers(0, 3, n)] + rng.normal(size=(n, 8))
    return latent @ basis + rng.normal(scale=0.5, size=(n, dims)) + 5.0 + shift


def test_training_like_features_pass_and_far_ones_are_flagged():
    guard = fit_guard(clusters(120, seed=0))
    new = guard.distance(clusters(500, seed=1))
    assert np.mean(new > guard.limit) <= 0.02  # training-like: at most 2 % flagged
    foreign = np.random.default_rng(2).normal(loc=5.0, scale=3.0, size=(100, 200))  # another product
    assert np.all(guard.distance(foreign) > guard.limit)
    assert np.all(guard.beyond(clusters(50, seed=3, shift=2.0)))  # the same structure, moved
    assert guard.n_images == 120 and guard.blocks[0].components.shape == (8, 200)


def test_few_images_still_give_a_guard_with_a_margin():
    features = clusters(12, seed=0)
    guard = fit_guard(features)
    assert guard is not None and guard.blocks[0].components.shape[0] == 8
    assert fit_guard(features[:5]).blocks[0].components.shape[0] == 4  # fewer components than images
    assert np.mean(guard.beyond(clusters(300, seed=4))) <= 0.05
    assert fit_guard(features[:3]) is None  # nothing to calibrate a limit with
    assert fit_guard(np.full((10, 5), np.nan)) is None


def test_blocks_of_features_each_have_their_model():
    features = np.hstack([clusters(80, seed=0, dims=40), clusters(80, seed=0)])  # e.g. an early stage + final
    guard = fit_guard(features, [40, 200])
    assert [b.width for b in guard.blocks] == [40, 200] and guard.dimensions == 240
    assert np.mean(guard.beyond(np.hstack([clusters(300, seed=1, dims=40), clusters(300, seed=1)]))) <= 0.02
    odd = np.hstack([clusters(50, seed=2, dims=40, shift=3.0), clusters(50, seed=2)])  # only one block moved
    assert np.all(guard.beyond(odd))
    with pytest.raises(ValueError, match="do not add up"):
        fit_guard(features, [40, 100])


def test_the_limit_is_the_conformal_quantile_with_enough_images_else_the_prediction_bound():
    distances = np.arange(1, 201, dtype=float)  # 200 out-of-fold distances: rank ceil(201 * 0.98) = 197
    assert calibrated_limit(distances, 0.02) == pytest.approx(197.0)
    assert calibrated_limit(np.arange(1, 50, dtype=float), 0.02) == 49.0  # 49 images: the quantile (the largest)
    few = np.exp(np.random.default_rng(0).normal(0.0, 0.2, 48))  # 48: too few for the quantile
    assert calibrated_limit(few, 0.02) == prediction_bound(few, 0.02) > few.max()
    assert calibrated_limit(np.arange(1, 11, dtype=float), 0.02) >= 10.0  # never below the largest


def test_student_t_quantiles():
    for dof, p, expected in ((3, 0.98, 3.4819), (10, 0.99, 2.7638), (15, 0.98, 2.2485), (23, 0.98, 2.1770),
                             (47, 0.98, 2.1123)):  # scipy.stats.t.ppf
        assert student_t_quantile(p, dof) == pytest.approx(expected, rel=2e-3)


def test_the_small_sample_bound_widens_as_the_images_get_fewer():
    def same_spread(n: int) -> np.ndarray:  # n log-distances of mean 0 and standard deviation 0.2 exactly
        z = np.linspace(-1.5, 1.5, n)
        return np.exp(0.2 * (z - z.mean()) / z.std(ddof=1))

    bounds = [prediction_bound(same_spread(n)) for n in (6, 10, 16, 24, 48)]
    assert all(a > b for a, b in zip(bounds, bounds[1:]))
    assert bounds[2] == pytest.approx(np.exp(0.2 * 2.2485 * np.sqrt(1 + 1 / 16)), rel=1e-3)  # t(0.98; 15)
    assert bounds[-1] > np.exp(0.2 * 2.0537)  # above the normal quantile, which it tends to as n grows
    outlier = np.array([1.0, 1.0, 1.01, 0.99, 1.0, 5.0])
    assert prediction_bound(outlier) >= 5.0  # floored at the largest


def test_the_small_sample_bound_flags_about_the_rate_of_new_images():
    """Log-normal distances, 16 images: averaged over draws a new image lies beyond the bound about 2 % of
    the time (the prediction bound's promise); the largest distance times 1.1 (the old rule) about 3 %."""
    from statistics import NormalDist

    rng = np.random.default_rng(0)
    sigma = 0.3
    beyond_bound, beyond_max = [], []
    for _ in range(4000):
        d = np.exp(rng.normal(0.0, sigma, 16))
        beyond_bound.append(1 - NormalDist(0, sigma).cdf(np.log(prediction_bound(d, 0.02))))
        beyond_max.append(1 - NormalDist(0, sigma).cdf(np.log(1.1 * d.max())))
    assert 0.015 < np.mean(beyond_bound) <= 0.021
    assert np.mean(beyond_max) > 0.028


def test_round_trip_through_json_gives_the_same_distances():
    guard = fit_guard(clusters(60, seed=0))
    text = json.dumps(guard.to_dict())
    again = read_guard(json.loads(text))
    probe = clusters(20, seed=5)
    assert np.array_equal(again.distance(probe), guard.distance(probe))
    assert again.limit == guard.limit and again.n_images == 60
    assert len(text) < 12_000  # compact: 8 components of 200 features, base64 float32
    assert read_guard(None) is None
    with pytest.raises(ValueError, match="version"):
        FamiliarityGuard.from_dict({**guard.to_dict(), "version": 99})
    with pytest.raises(ValueError, match="fitted on 200 features"):
        guard.distance(np.zeros((2, 7)))
    assert guard.distance(np.zeros((0, 200))).shape == (0,)


def test_rows_beyond_the_limit_are_unsure_with_the_distance_and_keep_the_model_answer():
    row = {"label": "ok", "confidence": 0.99, "probabilities": {"ok": 0.99, "scratch": 0.01}, "verdict": "OK"}
    far, near = familiarity_rows([row, row], [7.5, 0.8], limit=2.0)
    assert far["verdict"] == "UNSURE" and far["label"] == "ok" and far["confidence"] == 0.99
    assert far["reason"] == "unlike the training images (distance 7.50, limit 2.00)"
    assert far["familiarity"] == {"distance": 7.5, "limit": 2.0}
    assert near["verdict"] == "OK" and "reason" not in near and near["familiarity"]["distance"] == 0.8
    ng = familiarity_row({**row, "verdict": "NG"}, 3.0, 2.0)
    assert ng["verdict"] == "UNSURE"  # whatever the model said
    no_rule = familiarity_row({"label": "ok", "confidence": 0.9}, 3.0, 2.0)
    assert no_rule["verdict"] == "UNSURE"  # a classifier without OK classes too
    textured = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    guarded = guard_row(far, textured)  # the one vocabulary keeps it
    assert guarded["verdict"] == "UNSURE" and guarded["reason"].startswith("unlike the training images")
    assert "UNSURE (unlike the training images" in describe(guarded)
    blank = guard_row(far, np.zeros((32, 32, 3), dtype=np.uint8))  # a blank frame says so instead
    assert blank["verdict"] == "UNSURE" and not blank["reason"].startswith("unlike")
