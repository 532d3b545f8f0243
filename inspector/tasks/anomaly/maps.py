"""Anomaly maps: patch distances brought to the image's size, smoothed, and made readable.

Pure functions on numpy arrays, so the app, the CLI and the tests draw the same map.
"""
from __future__ import annotations

import cv2
import numpy as np

from ...errors import InspectorError
from .calibration import ScoreScale

THRESHOLD = 0.5  # where the threshold sits on a readable map (`normalise_map`), and so on the overlay


def anomaly_map(patch_map: np.ndarray, image_hw: tuple[int, int], sigma: float = 4,
                box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """Upsampled and smoothed raw patch distances at image size (H, W), float32.

    The map's peak is the image's raw score (the largest patch distance): smoothing and resizing
    lower a lone hot patch, so the map is stretched back between its lowest value and that peak.
    An image past the threshold therefore always has pixels past it (red on the overlay).

    Args:
        patch_map: (H', W') raw distances of one image, as returned by `PatchDetector.score`.
        image_hw: the (height, width) of the original image.
        sigma: the Gaussian smoothing in pixels of the output map (0 turns smoothing off).
        box: for letterboxed inputs, the part of the model input the image fills, as
            fractions (left, top, right, bottom) of the input's side (from
            `inspector.augment.letterbox_box` divided by the input size); None for stretch.
    """
    patch_map = np.asarray(patch_map, dtype=np.float32)
    if patch_map.ndim != 2 or patch_map.size == 0:
        raise InspectorError(f"An anomaly map needs a 2-D patch map, got shape {patch_map.shape}.")
    peak = float(patch_map.max())  # the image's raw score
    height, width = (int(v) for v in image_hw)
    if height <= 0 or width <= 0:
        raise InspectorError(f"The image size must be positive, got {image_hw}.")
    if box is not None:
        left, top, right, bottom = box
        h, w = patch_map.shape
        # Crop at input resolution first, so the corners of the map stay aligned.
        big = cv2.resize(patch_map, (w * 8, h * 8), interpolation=cv2.INTER_LINEAR)
        y0, y1 = int(round(top * h * 8)), max(int(round(bottom * h * 8)), int(round(top * h * 8)) + 1)
        x0, x1 = int(round(left * w * 8)), max(int(round(right * w * 8)), int(round(left * w * 8)) + 1)
        patch_map = np.ascontiguousarray(big[y0:y1, x0:x1])
    out = cv2.resize(patch_map, (width, height), interpolation=cv2.INTER_LINEAR)
    if sigma and sigma > 0:
        radius = int(4 * sigma + 0.5)
        out = cv2.GaussianBlur(out, (2 * radius + 1, 2 * radius + 1), sigmaX=float(sigma),
                               sigmaY=float(sigma), borderType=cv2.BORDER_REFLECT)
    return _with_peak(out, peak).astype(np.float32, copy=False)


def _with_peak(m: np.ndarray, peak: float) -> np.ndarray:
    """`m` stretched between its minimum and `peak` (unchanged when flat or already there)."""
    low, high = float(m.min()), float(m.max())
    if high <= low or high >= peak:
        return m
    return low + (m - low) * ((peak - low) / (high - low))


def normalise_map(m: np.ndarray, scale: ScoreScale) -> np.ndarray:
    """The readable mapping applied to every pixel: THRESHOLD (0.5) is the threshold, for overlays
    (`inspector.heatmap.overlay_heatmap(image, map, threshold=THRESHOLD)` draws it red past it)."""
    return scale.readable(m).astype(np.float32)
