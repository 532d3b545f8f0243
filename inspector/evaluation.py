"""Classification metrics: pure functions over label arrays."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

# An accuracy interval wider than this (95% Wilson) is too vague to compare models with.
WIDE_INTERVAL = 0.25


def wilson_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for an accuracy of correct/total (sane even for tiny totals)."""
    if total <= 0:
        return (0.0, 1.0)
    p = correct / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def interval_warning(ci: Sequence[float] | None) -> str | None:
    """A plain warning when an accuracy interval is too wide to trust, else None."""
    if not ci or ci[1] - ci[0] <= WIDE_INTERVAL:
        return None
    return (f"the 95% interval of this accuracy ({ci[0]:.0%} to {ci[1]:.0%}) is too wide to trust: "
            "with this few images a model can look better or worse than it is. Add images per class "
            "before relying on it or choosing between models.")


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """matrix[t, p] = images of true class t predicted as p."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def per_class_scores(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, F1, support) per class; 0 where undefined (scikit-learn's zero_division=0)."""
    hits = np.diag(matrix).astype(float)
    predicted, support = matrix.sum(0), matrix.sum(1)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(hits), where=total > 0)
    return precision, recall, f1, support


def evaluate_predictions(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str],
                         *, method: str = "hold-out") -> dict[str, Any]:
    """Accuracy with its interval, balanced accuracy (the mean recall over the classes present: what
    a rare defect class counts for, whatever the class sizes), macro-F1, per-class precision/recall/F1,
    confusion matrix.

    A class absent from the data (support 0) is not scored: its precision, recall and F1 are None
    (null in the JSON), never 0, and it stays out of macro-F1."""
    y_true, y_pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    n = int(y_true.size)
    correct = int((y_true == y_pred).sum())
    matrix = confusion_counts(y_true, y_pred, len(classes))
    precision, recall, f1, support = per_class_scores(matrix)
    present = support > 0  # macro-F1 over classes that were actually evaluated
    ci = wilson_interval(correct, n)
    return {
        "method": method,
        "n_images": n,
        "accuracy": correct / n if n else 0.0,
        "accuracy_ci": list(ci),
        "interval_too_wide": interval_warning(ci) is not None,
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "classes": list(classes),
        "per_class": {name: class_scores(precision[i], recall[i], f1[i], support[i])
                      for i, name in enumerate(classes)},
        "confusion_matrix": matrix.tolist(),
    }


def class_scores(precision: float, recall: float, f1: float, support: int) -> dict[str, Any]:
    """One class's row of `per_class`: None scores for a class absent from the data (support 0)."""
    if int(support) == 0:
        return {"precision": None, "recall": None, "f1": None, "support": 0}
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1), "support": int(support)}


def absent_classes(per_class: dict[str, dict[str, Any]]) -> list[str]:
    """The classes of a `per_class` dict with no image in the data (also old reports that scored them 0)."""
    return [name for name, scores in per_class.items() if not scores.get("support")]


def mean_log_loss(probabilities: np.ndarray, labels: Sequence[int]) -> float:
    """Cross-entropy of predicted class probabilities against the true labels."""
    labels = np.asarray(labels, dtype=int)
    # + 0.0 turns the -0.0 of a perfect fit into 0.0 (printed "-0.000" otherwise)
    return float(-np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-8, 1.0)).mean()) + 0.0


def accuracy_and_f1(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> tuple[float, float]:
    """The two numbers shown per epoch (cheap, no report)."""
    y_true, y_pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    _, _, f1, support = per_class_scores(confusion_counts(y_true, y_pred, n_classes))
    present = support > 0
    return float((y_true == y_pred).mean()), float(f1[present].mean()) if present.any() else 0.0


def auroc(negative_scores: Sequence[float], positive_scores: Sequence[float]) -> float | None:
    """Area under the ROC curve: the chance that a random positive scores above a random negative
    (ties count half). None when either side is empty."""
    neg, pos = np.asarray(negative_scores, dtype=float), np.asarray(positive_scores, dtype=float)
    if not neg.size or not pos.size:
        return None
    above = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(above / (pos.size * neg.size))


@dataclass(frozen=True)
class ClassScores:
    """One class's scores; None for a class absent from the evaluated data (support 0)."""

    precision: float | None
    recall: float | None
    f1: float | None
    support: int

    @property
    def absent(self) -> bool:
        """No image of this class in the evaluated data: its scores mean nothing (old reports stored 0)."""
        return self.support == 0


@dataclass(frozen=True)
class ClassificationEvaluation:
    """A classification run's evaluation.json, typed (what the pages and the CLI read)."""

    method: str
    n_images: int
    accuracy: float
    accuracy_ci: tuple[float, float]
    macro_f1: float
    classes: list[str]
    per_class: dict[str, ClassScores]
    confusion_matrix: list[list[int]]
    predictions: list[dict[str, str]] = field(default_factory=list)  # path, label, predicted
    balanced_accuracy: float | None = None  # None: a report from before it was measured

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassificationEvaluation:
        """From evaluation.json (or `evaluate_predictions`' dict plus "predictions"). Raises
        KeyError/TypeError on a report of another shape."""
        return cls(data.get("method", ""), data["n_images"], data["accuracy"], tuple(data["accuracy_ci"]),
                   data["macro_f1"], list(data["classes"]),
                   {name: ClassScores(**class_scores(s["precision"], s["recall"], s["f1"], s["support"]))
                    for name, s in data["per_class"].items()},  # old reports scored absent classes 0
                   data["confusion_matrix"], list(data.get("predictions", [])), data.get("balanced_accuracy"))

    def to_dict(self) -> dict[str, Any]:
        """evaluation.json: `evaluate_predictions`' keys, then the per-image predictions."""
        return {"method": self.method, "n_images": self.n_images, "accuracy": self.accuracy,
                "accuracy_ci": list(self.accuracy_ci), "interval_too_wide": interval_warning(self.accuracy_ci) is not None,
                "balanced_accuracy": self.balanced_accuracy, "macro_f1": self.macro_f1, "classes": list(self.classes),
                "per_class": {name: asdict(scores) for name, scores in self.per_class.items()},
                "confusion_matrix": self.confusion_matrix, "predictions": list(self.predictions)}


@dataclass(frozen=True)
class ScoredImage:
    path: str
    label: str
    score: float
    raw_score: float


@dataclass(frozen=True)
class DetectionEvaluation:
    """An anomaly run's evaluation.json, typed: good images' out-of-sample scores, defect scores.

    Scores are readable (0..1, 0.5 at the threshold); raw scores are patch distances."""

    method: str
    n_good: int
    n_defect: int
    threshold: float
    target_frr: float
    val_auroc: float | None
    val_detection_rate: float | None
    detection_rate_per_class: dict[str, float]
    good_scores: list[float]
    defects: list[ScoredImage]
    min_guaranteed_frr: float | None = None
    frr_warning: str | None = None
    score_scale: dict[str, float] = field(default_factory=dict)  # ScoreScale.to_dict()
    good_raw_scores: list[float] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectionEvaluation:
        """From evaluation.json. Raises KeyError/TypeError on a report of another shape."""
        return cls(data.get("method", ""), data["n_good"], data["n_defect"], data["threshold"], data["target_frr"],
                   data.get("val_auroc"), data.get("val_detection_rate"),
                   dict(data.get("detection_rate_per_class", {})), list(data["good_scores"]),
                   [ScoredImage(d["path"], d["label"], d["score"], d["raw_score"]) for d in data.get("defects", [])],
                   data.get("min_guaranteed_frr"), data.get("frr_warning"), dict(data.get("score_scale", {})),
                   list(data.get("good_raw_scores", [])))

    def to_dict(self) -> dict[str, Any]:
        """evaluation.json, in the order it has always been written."""
        return {"method": self.method, "n_good": self.n_good, "n_defect": self.n_defect, "threshold": self.threshold,
                "target_frr": self.target_frr, "min_guaranteed_frr": self.min_guaranteed_frr,
                "frr_warning": self.frr_warning, "val_auroc": self.val_auroc,
                "val_detection_rate": self.val_detection_rate, "score_scale": dict(self.score_scale),
                "detection_rate_per_class": dict(self.detection_rate_per_class), "good_scores": list(self.good_scores),
                "good_raw_scores": list(self.good_raw_scores),
                "defects": [{"path": d.path, "label": d.label, "raw_score": d.raw_score, "score": d.score}
                            for d in self.defects]}
