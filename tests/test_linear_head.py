"""The linear probe's head: shrinkage LDA with a temperature fitted out of fold."""
from __future__ import annotations

import numpy as np
import pytest

from inspector.tasks.classification.linear import ABSENT_CLASS_LOGIT, fit_lda, _scaled, choose_temperature, fit_linear_head, log_loss


def _blobs(n_per_class: int, n_classes: int, dim: int, separation: float, seed: int, draw: int = 0):
    """Gaussian classes in many dimensions (the class centres depend on `seed` only), `draw` picks
    the samples: few images, many features, the linear probe's situation."""
    centres = np.random.default_rng(seed).normal(size=(n_classes, dim)) * separation / np.sqrt(dim)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    noise = np.random.default_rng([seed, draw]).normal(size=(len(labels), dim))
    return centres[labels] + noise, labels


def _softmax(logits):
    z = np.exp(logits - logits.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def test_head_classifies_unseen_samples_with_better_probabilities_than_raw_lda():
    x, y = _blobs(10, 4, 600, separation=8.0, seed=0)
    x_test, y_test = _blobs(200, 4, 600, separation=8.0, seed=0, draw=1)
    head = fit_linear_head(x, y, 4, seed=0)
    accuracy = (head.logits(x_test).argmax(1) == y_test).mean()
    assert 0.5 < accuracy < 1.0  # overlapping classes: well above chance (0.25), not perfect
    raw_weight, raw_bias = fit_lda(x, y, 4)
    raw_logits = x_test @ raw_weight.T + raw_bias
    assert (raw_logits.argmax(1) == head.logits(x_test).argmax(1)).all()  # a temperature never flips a vote
    # Raw LDA is near-certain and often wrong; the fitted temperature gives a lower log-loss.
    assert _softmax(raw_logits).max(1).mean() > 0.9
    assert log_loss(head.logits(x_test), y_test) < 0.5 * log_loss(raw_logits, y_test)
    assert head.temperature > 1.0


@pytest.mark.parametrize("n_images, n_features, n_classes", [(60, 700, 6), (16, 30, 2), (9, 5, 3)])
def test_fast_solver_gives_scikit_learns_shrinkage_lda(n_images, n_features, n_classes):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    rng = np.random.default_rng(n_features)
    labels = np.arange(n_images) % n_classes
    offsets = rng.gamma(1.0, size=n_features)  # uneven feature scales, like pooled activations
    features = rng.normal(size=(n_images, n_features)) + 0.5 * labels[:, None] + offsets
    unseen = rng.normal(size=(25, n_features)) + offsets
    weight, bias = fit_lda(features, labels, n_classes)
    reference = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(features, labels)
    np.testing.assert_allclose(_softmax(unseen @ weight.T + bias), reference.predict_proba(unseen), atol=1e-8)


def test_a_class_without_training_rows_is_never_predicted():
    x, y = _blobs(6, 3, 40, separation=5.0, seed=3)
    weight, bias = fit_lda(x[y < 2], y[y < 2], n_classes=3)
    assert np.isnan(bias[2]) and not weight[2].any()
    head = fit_linear_head(x[y < 2], y[y < 2], 3, seed=0)
    assert head.bias[2] == pytest.approx(ABSENT_CLASS_LOGIT)
    assert (head.logits(x).argmax(1) != 2).all()


def test_one_or_two_images_per_class_still_give_a_finite_head():
    # Cross-validation inside cross-validation leaves folds with one image of a class: its
    # within-class variance is zero, which once made the solve singular (LinAlgError).
    rng = np.random.default_rng(6)
    features = rng.random((3, 300)) + np.array([[0.0], [1.0], [1.0]])
    weight, bias = fit_lda(features, np.array([0, 1, 1]), 2)
    assert np.isfinite(weight).all() and np.isfinite(bias).all()
    assert ((features @ weight.T + bias).argmax(1) == [0, 1, 1]).all()
    head = fit_linear_head(np.repeat(features, 2, axis=0), np.array([0, 0, 1, 1, 1, 1]), 2, seed=0)
    assert np.isfinite(head.weight).all() and np.isfinite(head.temperature)


@pytest.mark.parametrize("seed", range(3))
def test_temperature_follows_the_final_models_scale_with_five_images_per_class(seed):
    # Fold models fitted on 4 images per class score more sharply than the final one on 5: the
    # temperature that suits them is rescaled to the final model, which improves its log-loss.
    x, y = _blobs(5, 6, 600, separation=8.0, seed=seed)
    x_test, y_test = _blobs(200, 6, 600, separation=8.0, seed=seed, draw=1)
    weight, bias = fit_lda(x, y, 6)
    fold_temperature = choose_temperature(x, y, 6, seed=0)
    rescaled = choose_temperature(x, y, 6, seed=0, final_weight=weight)
    assert rescaled < fold_temperature
    # Doubling the final model's scores doubles its temperature: the probabilities stay the same.
    assert choose_temperature(x, y, 6, seed=0, final_weight=2 * weight) == pytest.approx(2 * rescaled)

    def held_out_loss(temperature):
        w, b = _scaled(weight, bias, temperature)
        return log_loss(x_test @ w.T + b, y_test)

    assert held_out_loss(rescaled) < held_out_loss(fold_temperature)
