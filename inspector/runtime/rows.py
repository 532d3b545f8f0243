"""The one result-row builder: model outputs -> the dicts `inspector predict --json`, the service,
the app and the exported bundle's predict.py all return (one dict per image, no path).

    probabilities (classifiers): {"label", "confidence", "probabilities": {class: p}}
        + with OK classes: {"verdict": "OK" | "NG", "defect_probability"}
    anomaly scores:             {"score", "raw_score", "verdict": "OK" | "NG"}

Every row then passes `guard_rows`, which gives all models one verdict vocabulary (VERDICTS):
    {"label": class or None, "verdict": "OK" | "NG" | "UNSURE" | None, "reason": None or a sentence}
`label` is None when the model names no class (anomaly models), `verdict` None when no OK/NG rule
was given (a classifier without OK classes). UNSURE: the model's answer cannot be trusted for this
image, and `reason` says why (a blank, saturated or flat frame: frames.py; an image unlike the training
images: familiarity.py, `familiarity_row`); `reason` is None for a plain OK or NG.

A model that keeps a familiarity guard adds to each row, before `guard_rows`:
    {"familiarity": {"distance": float, "limit": float}}
and an image beyond the limit is UNSURE, its label and probabilities (or score) kept.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .calibration import ScoreScale
from .frames import frame_problem

VERDICTS = ("OK", "NG", "UNSURE")


def defect_probability(probabilities: dict[str, float], ok_classes: Sequence[str]) -> float:
    """P(defect) = 1 - P(any OK class), clipped to [0, 1] (float rounding can leave 1 - sum < 0)."""
    ok = set(ok_classes)
    return min(1.0, max(0.0, 1.0 - sum(p for name, p in probabilities.items() if name in ok)))


def probability_row(classes: Sequence[str], probabilities: Sequence[float], ok_classes: Sequence[str] = (),
                    threshold: float = 0.5) -> dict[str, Any]:
    """One image's row from its class probabilities (C,): the most probable class and its
    probability; with `ok_classes` also the verdict, NG when P(defect) >= `threshold`."""
    probs = {str(c): float(p) for c, p in zip(classes, probabilities)}
    label = str(classes[int(np.argmax(np.asarray(probabilities)))])
    row: dict[str, Any] = {"label": label, "confidence": probs[label], "probabilities": probs}
    if ok_classes:
        p_defect = defect_probability(probs, ok_classes)
        row.update(verdict="OK" if p_defect < threshold else "NG", defect_probability=p_defect)
    return row


def probability_rows(classes: Sequence[str], probabilities: np.ndarray, ok_classes: Sequence[str] = (),
                     threshold: float = 0.5) -> list[dict[str, Any]]:
    """Rows of a classifier's probabilities (n, C), in the order of `classes`."""
    return [probability_row(classes, row, ok_classes, threshold) for row in np.asarray(probabilities)]


def score_row(raw_score: float, scale: ScoreScale) -> dict[str, Any]:
    """One image's row from its raw anomaly score: `score` is 0..1 and exactly 0.5 at the threshold;
    NG when the raw score is above the threshold."""
    raw = float(raw_score)
    return {"score": float(scale.readable(raw)), "raw_score": raw, "verdict": "NG" if raw > scale.threshold else "OK"}


def score_rows(raw_scores: np.ndarray, scale: ScoreScale) -> list[dict[str, Any]]:
    """Rows of raw anomaly scores (n,)."""
    return [score_row(raw, scale) for raw in np.asarray(raw_scores).ravel()]


UNFAMILIAR = "unlike the training images"


def familiarity_row(row: dict[str, Any], distance: float, limit: float) -> dict[str, Any]:
    """The row with its image's distance from the training images and the limit of a familiar one
    ("familiarity": {"distance", "limit"}); beyond the limit the verdict is UNSURE whatever the model
    said (its label, probabilities or score are kept) and `reason` says how far the image lies."""
    distance, limit = float(distance), float(limit)
    marked = {**row, "familiarity": {"distance": distance, "limit": limit}}
    if distance > limit:
        marked.update(verdict="UNSURE", reason=f"{UNFAMILIAR} (distance {distance:.2f}, limit {limit:.2f})")
    return marked


def familiarity_rows(rows: Sequence[dict[str, Any]], distances: Sequence[float], limit: float) -> list[dict[str, Any]]:
    """`familiarity_row` of each row with its image's distance (same order and length)."""
    if len(rows) != len(distances):
        raise ValueError(f"{len(rows)} result rows for {len(distances)} distances")
    return [familiarity_row(row, d, limit) for row, d in zip(rows, distances)]


def guard_row(row: dict[str, Any], image: np.ndarray) -> dict[str, Any]:
    """The row in the one vocabulary (label, verdict, reason always present), checked against its
    RGB uint8 image (H, W, 3): a blank, saturated or flat frame is never a confident OK. Its OK (or
    missing) verdict becomes UNSURE, an NG stays NG; either way `reason` names the frame's problem.
    Idempotent: a row guarded twice is the same."""
    guarded = {**row, "label": row.get("label"), "verdict": row.get("verdict"), "reason": row.get("reason")}
    problem = frame_problem(image)
    if problem is not None:
        guarded["reason"] = problem
        if guarded["verdict"] != "NG":
            guarded["verdict"] = "UNSURE"
    return guarded


def guard_rows(rows: Sequence[dict[str, Any]], images: Sequence[np.ndarray]) -> list[dict[str, Any]]:
    """`guard_row` of each row with its image (same order and length)."""
    if len(rows) != len(images):
        raise ValueError(f"{len(rows)} result rows for {len(images)} images")
    return [guard_row(row, image) for row, image in zip(rows, images)]


def describe(row: dict[str, Any]) -> str:
    """One guarded row in a few words for a terminal: 'scratch  0.973  NG', 'OK, anomaly 0.21', and the
    reason after an UNSURE ('UNSURE (blank frame: ...)')."""
    if "raw_score" in row:
        text = f"{row['verdict']}, anomaly {row['score']:.2f}"
    else:
        text = f"{row['label']}\t{row['confidence']:.3f}" + (f"  {row['verdict']}" if row.get("verdict") else "")
    return text + (f" ({row['reason']})" if row.get("reason") else "")
