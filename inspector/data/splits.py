"""Seeded, stratified train/validation splits that suit a handful of images."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inspector.config import MAX_VAL_FRACTION
from inspector.errors import InspectorError

__all__ = ["ValidationPlan", "plan_validation", "stratified_holdout"]


@dataclass(frozen=True)
class ValidationPlan:
    """How a model will be validated.

    ``folds`` holds ``(train_idx, val_idx)`` pairs: one for "holdout", k for
    "cross_validation". ``description`` is a plain sentence for the user.
    """

    mode: str
    folds: list[tuple[np.ndarray, np.ndarray]]
    description: str


def plan_validation(
    labels: Sequence[int],
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    min_val_per_class: int = 10,
    max_folds: int = 5,
) -> ValidationPlan:
    """Hold-out if every class gets ``min_val_per_class`` validation images, else k-fold CV.

    Below about 50 images per class a 20% hold-out is both too small to trust and a waste: the
    kept model would train without those images. Cross-validation keeps them all for the model
    (training.py fits it on everything) and still validates every image once.

    Both are stratified and depend only on ``labels`` and ``seed``. For CV,
    ``k = min(max_folds, smallest class count)`` (at least 2).

    Raises:
        InspectorError: a class has fewer than 2 images.
    """
    if not 0.0 < val_fraction < MAX_VAL_FRACTION:
        raise ValueError(f"val_fraction must be between 0 and {MAX_VAL_FRACTION}, got {val_fraction}")
    y = np.asarray(labels, dtype=np.int64)
    classes, counts = np.unique(y, return_counts=True)
    _require_min_count(classes, counts, 2, "for training and validation")
    n_val = {c: min(n - 1, math.floor(n * val_fraction + 0.5)) for c, n in zip(classes, counts)}
    if min(n_val.values()) >= min_val_per_class:
        rng = np.random.default_rng(seed)
        val = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[: n_val[c]] for c in classes]))
        train = np.setdiff1d(np.arange(len(y)), val)
        return ValidationPlan(
            "holdout",
            [(train, val)],
            f"hold-out: {val_fraction:.0%} of the images ({len(val)}) kept aside for validation",
        )
    k = max(2, min(max_folds, int(counts.min())))
    return ValidationPlan(
        "cross_validation",
        _stratified_folds(y, k, seed),
        f"{k}-fold cross-validation: the smallest class has only {int(counts.min())} images, "
        "too few for a reliable hold-out split",
    )


def stratified_holdout(labels: Sequence[int], n_per_class: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Exactly ``n_per_class`` training images per class (seeded); every other image is test.

    Raises:
        InspectorError: a class has no image left for testing (``<= n_per_class`` images).
    """
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be at least 1, got {n_per_class}")
    y = np.asarray(labels, dtype=np.int64)
    classes, counts = np.unique(y, return_counts=True)
    _require_min_count(classes, counts, n_per_class + 1, f"for {n_per_class} training and 1 test image")
    rng = np.random.default_rng(seed)
    train = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:n_per_class] for c in classes])
    train = np.sort(train)
    return train, np.setdiff1d(np.arange(len(y)), train)


def _stratified_folds(y: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded stratified k-fold (scikit-learn's, imported late to keep imports light)."""
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [
        (np.sort(train).astype(np.int64), np.sort(val).astype(np.int64))
        for train, val in splitter.split(np.zeros(len(y)), y)
    ]


def _require_min_count(classes: np.ndarray, counts: np.ndarray, minimum: int, purpose: str) -> None:
    small = [f"class {int(c)} has {int(n)}" for c, n in zip(classes, counts) if n < minimum]
    if len(classes) == 0:
        raise InspectorError("No images to split.")
    if small:
        raise InspectorError(
            f"Every class needs at least {minimum} images {purpose}, but " + ", ".join(small) + "."
        )
