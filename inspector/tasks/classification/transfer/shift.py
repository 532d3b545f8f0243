"""The shift meter: how different two lines' images look to a frozen backbone, as one number.

A domain classifier (logistic regression on standardised frozen features) learns to tell the source's
images from this line's; its cross-validated AUROC is the shift: 0.5 means it cannot tell them apart,
1.0 that every image gives its line away. This is the "proxy A-distance" idea of Ben-David et al.
(2010) read as an AUROC, a figure quality engineers know from the anomaly task.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

MIN_PER_DOMAIN = 4  # fewer images than this on either side: no figure
FOLDS = 5


@dataclass(frozen=True)
class Shift:
    """`domain_auroc` in [0.5, 1]: how well the lines are told apart (0.5: alike); `words`: what it means
    for a user; `per_class`: the same figure for each class both lines have labelled images of."""

    domain_auroc: float
    words: str
    per_class: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def shift_words(auroc: float) -> str:
    """A domain classifier's AUROC in plain words (the bands are rules of thumb, not measured limits)."""
    if auroc < 0.6:
        return "the two lines look alike to the model: a model from the other line should carry over"
    if auroc < 0.8:
        return "the lines differ somewhat: adapting to this line is worth trying"
    if auroc < 0.95:
        return "the lines differ clearly: a model from the other line alone will likely fail here; adapt it"
    return ("the lines differ strongly (the model tells every image's line apart): adapt, and check the "
            "result on labelled images from this line")


def domain_auroc(source: np.ndarray, target: np.ndarray, *, seed: int = 0) -> float | None:
    """Cross-validated AUROC of a classifier telling `source` rows (n_s, d) from `target` rows (n_t, d);
    None when either side has fewer than MIN_PER_DOMAIN rows. Folded to >= 0.5 (a classifier that is
    worse than chance out of fold still tells nothing apart)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if min(len(source), len(target)) < MIN_PER_DOMAIN:
        return None
    x = np.concatenate([source, target]).astype(np.float64)
    domain = np.r_[np.zeros(len(source)), np.ones(len(target))]
    folds = StratifiedKFold(n_splits=min(FOLDS, min(len(source), len(target))), shuffle=True, random_state=seed)
    # Strong L2 (C small): with more features than images an unregularised classifier separates anything.
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=2000))
    scores = cross_val_predict(classifier, x, domain, cv=folds, method="decision_function")
    auroc = float(roc_auc_score(domain, scores))
    return max(auroc, 1.0 - auroc) if auroc < 0.5 else auroc


def measure_shift(source: np.ndarray, source_labels: np.ndarray, target: np.ndarray,
                  target_labels: np.ndarray | None, classes: list[str], *, seed: int = 0) -> Shift | None:
    """The shift between the source's frozen features (n_s, d) and this line's (n_t, d: labelled and
    unlabelled together), and per class where both lines have labelled images (`target_labels`: one
    per target row, -1 for unlabelled). None when either line has too few images."""
    overall = domain_auroc(source, target, seed=seed)
    if overall is None:
        return None
    per_class = {}
    if target_labels is not None:
        for k, name in enumerate(classes):
            value = domain_auroc(source[source_labels == k], target[target_labels == k], seed=seed)
            if value is not None:
                per_class[name] = round(value, 3)
    return Shift(round(overall, 3), shift_words(overall), per_class)

