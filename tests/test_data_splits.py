"""plan_validation and stratified_holdout: stratified, seeded, complete and disjoint."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inspector.data import ValidationPlan, plan_validation, stratified_holdout
from inspector.errors import InspectorError


def _labels(*counts: int) -> list[int]:
    return [c for c, n in enumerate(counts) for _ in range(n)]


def _assert_partition(train: np.ndarray, val: np.ndarray, n: int) -> None:
    assert len(np.intersect1d(train, val)) == 0
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(n))


def test_enough_images_give_a_stratified_holdout():
    labels = _labels(60, 50)
    plan = plan_validation(labels)
    assert isinstance(plan, ValidationPlan) and plan.mode == "holdout" and len(plan.folds) == 1
    train, val = plan.folds[0]
    _assert_partition(train, val, 110)
    y = np.array(labels)
    assert np.bincount(y[val]).tolist() == [12, 10]
    assert plan.description == "hold-out: 20% of the images (22) kept aside for validation"


def test_same_seed_same_split_other_seed_other_split():
    labels = _labels(60, 60)
    a, b, c = (plan_validation(labels, seed=s).folds[0][1] for s in (1, 1, 2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_few_images_give_cross_validation_with_k_from_the_smallest_class():
    labels = _labels(40, 3)
    plan = plan_validation(labels)
    assert plan.mode == "cross_validation" and len(plan.folds) == 3
    assert plan.description.startswith("3-fold cross-validation: the smallest class has only 3 images")
    all_val = np.concatenate([val for _, val in plan.folds])
    assert sorted(all_val.tolist()) == list(range(43))  # every image validated exactly once
    y = np.array(labels)
    for train, val in plan.folds:
        _assert_partition(train, val, 43)
        assert (y[val] == 1).sum() == 1  # stratified


def test_cross_validation_uses_at_most_max_folds_and_at_least_two():
    assert len(plan_validation(_labels(12, 12)).folds) == 5
    assert len(plan_validation(_labels(12, 12), max_folds=3).folds) == 3
    assert len(plan_validation(_labels(2, 9)).folds) == 2


def test_class_with_one_image_cannot_be_split():
    with pytest.raises(InspectorError, match="at least 2 images"):
        plan_validation(_labels(10, 1))


@settings(max_examples=100, deadline=None)
@given(counts=st.lists(st.integers(2, 80), min_size=1, max_size=5), seed=st.integers(0, 2**31))
def test_every_plan_partitions_the_data(counts, seed):
    labels = _labels(*counts)
    plan = plan_validation(labels, seed=seed)
    y = np.array(labels)
    for train, val in plan.folds:
        _assert_partition(train, val, len(labels))
        assert set(y[train].tolist()) == set(y.tolist())  # every class is trained on
    if plan.mode == "holdout":
        assert min(np.bincount(y[plan.folds[0][1]])) >= 10


def test_stratified_holdout_takes_exactly_n_per_class():
    labels = _labels(15, 32, 11)
    train, test = stratified_holdout(labels, 10, seed=0)
    _assert_partition(train, test, len(labels))
    assert np.bincount(np.array(labels)[train]).tolist() == [10, 10, 10]
    again, _ = stratified_holdout(labels, 10, seed=0)
    other, _ = stratified_holdout(labels, 10, seed=1)
    assert np.array_equal(train, again) and not np.array_equal(train, other)


def test_stratified_holdout_needs_a_test_image_per_class():
    with pytest.raises(InspectorError, match="at least 11 images"):
        stratified_holdout(_labels(20, 10), 10, seed=0)
