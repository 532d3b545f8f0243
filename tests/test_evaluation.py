from __future__ import annotations

import numpy as np
import pytest

from inspector.evaluation import evaluate_predictions, interval_warning, wilson_interval


def test_wilson_interval_brackets_the_accuracy_and_narrows_with_more_images():
    low, high = wilson_interval(8, 10)
    assert low < 0.8 < high
    low_big, high_big = wilson_interval(800, 1000)
    assert high_big - low_big < high - low
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_report_has_confusion_matrix_and_per_class_metrics():
    report = evaluate_predictions([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0], ["ok", "scratch", "dent"])
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert report["per_class"]["scratch"]["precision"] == pytest.approx(2 / 3)
    assert report["per_class"]["dent"]["recall"] == pytest.approx(0.5)
    assert report["n_images"] == 6
    assert report["interval_too_wide"] is True  # six images cannot pin down an accuracy


def test_interval_warning_only_for_intervals_too_wide_to_trust():
    assert "30% to 90%" in interval_warning((0.3, 0.9))
    assert interval_warning(wilson_interval(900, 1000)) is None
    assert interval_warning(None) is None


def test_per_class_scores_match_scikit_learn():
    from sklearn.metrics import precision_recall_fscore_support

    from inspector.evaluation import confusion_counts, per_class_scores

    rng = np.random.default_rng(0)
    for _ in range(100):
        k, n = int(rng.integers(2, 6)), int(rng.integers(1, 30))
        truth, predicted = rng.integers(0, k, n), rng.integers(0, k, n)
        expected = precision_recall_fscore_support(truth, predicted, labels=list(range(k)), zero_division=0)
        for ours, theirs in zip(per_class_scores(confusion_counts(truth, predicted, k)), expected):
            np.testing.assert_allclose(ours, theirs)
