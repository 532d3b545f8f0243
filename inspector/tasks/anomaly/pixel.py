"""Pixel AUROC: how well an anomaly run's maps outline the defects, on test images with defect masks.

The measure of MVTec AD and anomalib: every pixel of every scored test image is one sample, a
defect pixel (white in its mask) a positive, and the ROC area of the anomaly map's values over
them all. Good images without a mask count as all good pixels; a defect image without a mask is
left out (its defect's pixels are unknown). Maps are drawn exactly as the app draws them
(`maps.anomaly_map`), at the mask's size, capped at `MAX_SIDE` pixels on the long side so that
memory stays bounded on large images (anomalib scores at its 256 px input size too).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from ...augment import letterbox_box
from ...runtime.images import load_image, to_rgb_array
from .maps import anomaly_map

MAX_SIDE = 256


def pixel_auroc(predictor: Any, samples: Sequence[Any], ok_classes: Sequence[str]) -> dict[str, Any]:
    """{"pixel_auroc": area or None, "pixel_auroc_images": images scored} over `samples` (with `.path`,
    `.label`, `.mask`). None when no sample has a mask or the masks hold no defect pixel."""
    ok = set(ok_classes)
    chosen = [s for s in samples if s.mask is not None or s.label in ok]
    if not any(s.mask is not None for s in chosen):
        return {"pixel_auroc": None, "pixel_auroc_images": 0}
    _, maps = predictor.score([s.path for s in chosen])
    truth, scores = [], []
    for sample, patch_map in zip(chosen, maps):
        mask = read_mask(sample.mask) if sample.mask is not None else np.zeros((sample.height, sample.width), bool)
        height, width = mask.shape
        size = _scored_size(height, width)
        mask = cv2.resize(mask.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_AREA) >= 0.5
        sigma = max(2.0, min(height, width) / 64) * size[0] / height  # the app's smoothing, at this scale
        scores.append(anomaly_map(patch_map, size, sigma=sigma, box=_box(predictor, width, height)).ravel())
        truth.append(mask.ravel())
    return {"pixel_auroc": _roc_area(np.concatenate(truth), np.concatenate(scores)), "pixel_auroc_images": len(chosen)}


def read_mask(path: Any) -> np.ndarray:
    """A defect mask as booleans (H, W): True where the mask is brighter than half its brightest value
    (0/255, 0/1 and JPEG-noisy masks alike); all False for an all-black mask."""
    grey = to_rgb_array(load_image(path)).max(axis=2)
    top = int(grey.max())
    return grey > top / 2 if top else np.zeros(grey.shape, bool)


def _scored_size(height: int, width: int) -> tuple[int, int]:
    scale = min(1.0, MAX_SIDE / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _box(predictor: Any, width: int, height: int) -> tuple[float, float, float, float] | None:
    """The part of the model input a letterboxed image fills, as fractions (as `heatmap` uses)."""
    prep = predictor.preprocessing
    if prep.resize_mode != "letterbox" or prep.tiling:  # tiles are squares of the image: no padding
        return None
    left, top, right, bottom = letterbox_box(prep, width, height)
    return left / prep.image_size, top / prep.image_size, right / prep.image_size, bottom / prep.image_size


def _roc_area(truth: np.ndarray, scores: np.ndarray) -> float | None:
    if truth.all() or not truth.any():
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(truth, scores))
