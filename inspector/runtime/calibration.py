"""A threshold from good images only, with a guarantee, and a score people can read.

Split-conformal calibration: if the n calibration scores and a new good part's score are
exchangeable (all good parts, each scored by a bank that did not contain it), then the
k-th smallest calibration score with k = ceil((n + 1)(1 - a)) is a threshold t with
P(new good score > t) <= a. The guarantee is on average over calibration sets, and it needs
k <= n, that is a >= 1 / (n + 1): with 19 good images the best promise is 5 %.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import InspectorError


def _check_target(target_frr: float) -> float:
    try:
        a = float(target_frr)
    except (TypeError, ValueError):
        raise InspectorError(f"The target false-reject rate must be a number, not {target_frr!r}.") from None
    if not 0.0 < a < 1.0 or math.isnan(a):
        raise InspectorError(
            f"The target false-reject rate must be between 0 and 1 (for example 0.05 for 5 %), not {target_frr}.")
    return a


def _check_scores(calibration_scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(calibration_scores, dtype=np.float64).ravel()
    if scores.size == 0:
        raise InspectorError("No good images were scored, so no threshold can be set: add good images.")
    if not np.all(np.isfinite(scores)):
        raise InspectorError("Some calibration scores are not finite numbers; the good images could not be scored.")
    return scores


def min_guaranteed_frr(n: int) -> float:
    """The smallest false-reject rate that n calibration images can guarantee: 1 / (n + 1)."""
    if n < 0:
        raise InspectorError(f"The number of good images cannot be negative ({n}).")
    return 1.0 / (n + 1)


def conformal_threshold(calibration_scores: np.ndarray, target_frr: float) -> float:
    """The ceil((n+1)(1-a))-th smallest score, so that P(new good score > t) <= a.

    When there are too few scores for the target (k > n), the largest score is returned:
    it then guarantees only 1/(n+1) (see `frr_guarantee_message`).
    """
    a = _check_target(target_frr)
    scores = np.sort(_check_scores(calibration_scores))
    n = scores.size
    # The small tolerance keeps (n+1)(1-a) = 19.0000000001 from rounding up to 20.
    k = math.ceil((n + 1) * (1.0 - a) - 1e-9)
    return float(scores[min(max(k, 1), n) - 1])


def frr_guarantee_message(n: int, target_frr: float) -> str | None:
    """A plain sentence when n good images are too few for the target, else None."""
    a = _check_target(target_frr)
    best = min_guaranteed_frr(n)
    if best <= a + 1e-12:
        return None
    needed = max(math.ceil(1.0 / a - 1.0 - 1e-9), 1)
    return (f"With {n} good images the lowest false-reject rate that can be guaranteed is "
            f"{best:.1%}, above the target of {a:.1%}. The threshold is set at the highest good "
            f"score instead; add at least {needed - n} more good images ({needed} in all) "
            f"to guarantee {a:.1%}.")


@dataclass(frozen=True)
class ScoreScale:
    """Maps a raw anomaly distance to a readable score in [0, 1].

    readable = 1 / (1 + exp(-(raw - threshold) / scale)): exactly 0.5 at the threshold,
    strictly increasing in the raw distance (until float rounding saturates it far from the
    threshold). `scale` is set so that the median good calibration image reads 0.25.
    """

    threshold: float
    scale: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.threshold) and math.isfinite(self.scale) and self.scale > 0):
            raise InspectorError(f"Invalid score scale (threshold {self.threshold}, scale {self.scale}).")

    def readable(self, raw: np.ndarray | float) -> np.ndarray:
        x = (np.asarray(raw, dtype=np.float64) - self.threshold) / self.scale
        # The tanh form of the logistic: no overflow warning, and exactly 0.5 at x = 0.
        return 0.5 * (1.0 + np.tanh(0.5 * x))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoreScale:
        return cls(threshold=float(data["threshold"]), scale=float(data["scale"]))


def calibrate(calibration_scores: np.ndarray, target_frr: float) -> ScoreScale:
    """The conformal threshold for `target_frr` and a readable scale, from good scores only.

    Store the calibration scores with the run: calling this again with another target moves
    the threshold without retraining.
    """
    scores = _check_scores(calibration_scores)
    threshold = conformal_threshold(scores, target_frr)
    median = float(np.median(scores))
    spread = threshold - median
    if not spread > 0:  # all scores equal, or the target sits below the median
        spread = float(np.std(scores)) or abs(threshold) * 0.1 or 1.0
        return ScoreScale(threshold, spread)
    return ScoreScale(threshold, spread / math.log(3.0))  # the median good image reads 0.25
