"""Conformal threshold and readable score (re-exported): the code lives in
`inspector.runtime.calibration`, which the exported bundle carries to move its threshold."""
from __future__ import annotations

from ...runtime.calibration import (
    ScoreScale,
    calibrate,
    conformal_threshold,
    frr_guarantee_message,
    min_guaranteed_frr,
)

__all__ = ["ScoreScale", "calibrate", "conformal_threshold", "frr_guarantee_message", "min_guaranteed_frr"]
