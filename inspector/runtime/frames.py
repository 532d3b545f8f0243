"""Frames with nothing to inspect: blank (black), saturated (white) or flat (no detail) images.

A lens cap, a lamp that failed, a missed trigger or an overexposed shot gives such a frame, and a
model trained on parts has never seen one: a classifier may call it "ok" with probability 1.000.
No model's verdict on such a frame can be trusted, so the row builder (rows.guard_rows) turns its OK
(or missing) verdict into UNSURE with the reason, and the data report warns about them in training data.

The thresholds are in 8-bit grey levels of the decoded image (16-bit images after their bit-depth
mapping). Checked against the shared data sets (2,844 real and 170 generated part images): the
darkest image's 99th percentile is 71, the brightest image's 1st percentile 182 and the smallest
spread between the 1st and 99th percentiles 25 levels, so none is flagged.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["BLACK_BELOW", "FLAT_WITHIN", "WHITE_ABOVE", "frame_problem"]

BLACK_BELOW = 16  # 99 % of the pixels darker than this: a black frame
WHITE_ABOVE = 240  # 99 % of the pixels brighter than this: a saturated frame
FLAT_WITHIN = 6  # 98 % of the pixels within this many grey levels: a flat frame
_SIDE = 256  # the check looks at the image reduced to about this size (the whole view, cheaply)


def frame_problem(image: np.ndarray | Image.Image) -> str | None:
    """Why this frame has nothing to inspect (one plain sentence), or None for an ordinary image.

    image: an RGB uint8 array (H, W, 3) or a PIL image, any size. Uses the 1st and 99th percentiles of
    the grey levels, so a few hot pixels or a dust speck do not make a blank frame look ordinary.
    """
    grey = _grey(image)
    if grey.size == 0:
        return None
    low, high = np.percentile(grey, [1, 99])
    if high < BLACK_BELOW:
        return (f"blank frame: almost black (99 % of the pixels below {BLACK_BELOW} of 255; lens cap, "
                f"lamp off or a missed trigger?)")
    if low > WHITE_ABOVE:
        return f"saturated frame: almost white (99 % of the pixels above {WHITE_ABOVE} of 255; overexposed?)"
    if high - low <= FLAT_WITHIN:
        return (f"flat frame: no detail (98 % of the pixels within {FLAT_WITHIN} grey levels of each other; "
                f"covered, far out of focus or nothing in view?)")
    return None


def _grey(image: np.ndarray | Image.Image) -> np.ndarray:
    """The grey levels of a reduced copy (float32, flattened)."""
    if isinstance(image, Image.Image):
        factor = max(1, max(image.size) // _SIDE)
        image = np.asarray((image.reduce(factor) if factor > 1 else image).convert("L"))
    array = np.asarray(image)
    step = max(1, max(array.shape[:2]) // _SIDE) if array.ndim >= 2 else 1
    small = array[::step, ::step] if array.ndim >= 2 else array
    grey = small.mean(axis=2) if small.ndim == 3 else small
    return grey.astype(np.float32).ravel()
