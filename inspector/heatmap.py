"""Class-activation heatmaps (Grad-CAM via the maintained `grad-cam` package) and overlays."""
from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np
import torch


def find_cam_layer(model: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    """The module whose output is the backbone's final feature map (works for any timm model).

    It is the last module to fire during forward_features whose output *is* the returned tensor:
    bn2 for EfficientNet, layer4 for ResNet, the final norm for a ViT.
    """
    fired: list[tuple[torch.nn.Module, object]] = []
    hooks = [m.register_forward_hook(lambda mod, _inp, out: fired.append((mod, out)))
             for m in model.modules() if m is not model]
    try:
        with torch.no_grad():
            features = model.forward_features(example)
    finally:
        for hook in hooks:
            hook.remove()
    for module, output in reversed(fired):
        if output is features:
            return module
    raise RuntimeError("cannot find the feature layer for the heatmap")


def _tokens_to_grid(tensor: torch.Tensor) -> torch.Tensor:
    """ViT tokens (B, N, C) -> (B, C, H, W), dropping class/register tokens."""
    if tensor.dim() != 3:
        return tensor
    n = tensor.shape[1]
    # The patch tokens form a square grid; up to 8 class/register tokens come first.
    prefix = next((k for k in range(9) if math.isqrt(n - k) ** 2 == n - k), 0)
    side = math.isqrt(n - prefix)
    grid = tensor[:, prefix:, :].reshape(tensor.shape[0], side, side, tensor.shape[2])
    return grid.permute(0, 3, 1, 2)


def class_activation_map(model: torch.nn.Module, layer: torch.nn.Module, tensor: torch.Tensor,
                         class_index: int | None = None) -> np.ndarray:
    """Grad-CAM of one image tensor (1, C, H, W) -> (H, W) float array in [0, 1]."""
    # Imported here: grad-cam pulls in scikit-learn, which predicting without a heatmap never needs.
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model.eval()
    targets = None if class_index is None else [ClassifierOutputTarget(int(class_index))]
    with GradCAM(model=model, target_layers=[layer], reshape_transform=_tokens_to_grid) as cam:
        result = cam(input_tensor=tensor, targets=targets)[0]
    result = np.nan_to_num(result.astype(np.float32))
    peak = result.max()
    return result / peak if peak > 0 else result


# The colour scale of a thresholded map (an anomaly map): below the threshold the blue-to-yellow part
# of the jet scale, at and past it only its red end, so red means "past the threshold" and nothing else.
BELOW_THRESHOLD, PAST_THRESHOLD = (0.0, 0.6), (0.9, 1.0)


def threshold_scale(heat: np.ndarray, threshold: float) -> np.ndarray:
    """Positions on the jet scale for a [0, 1] map whose `threshold` is a fixed place: values below it
    fill BELOW_THRESHOLD (blue to yellow), values at or past it PAST_THRESHOLD (red to dark red)."""
    heat = np.clip(np.asarray(heat, dtype=np.float32), 0, 1)
    (lo0, lo1), (hi0, hi1) = BELOW_THRESHOLD, PAST_THRESHOLD
    below = lo0 + (lo1 - lo0) * heat / max(threshold, 1e-6)
    past = hi0 + (hi1 - hi0) * (heat - threshold) / max(1 - threshold, 1e-6)
    return np.where(heat >= threshold, past, below).astype(np.float32)


def overlay_heatmap(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45,
                    threshold: float | None = None) -> np.ndarray:
    """Blend a [0, 1] heatmap (jet colours) over an RGB uint8 image of the same size.

    With a `threshold` (an anomaly map: 0.5), the colours say which side of it each pixel is on:
    blue to yellow below, red at and past it (`threshold_scale`)."""
    if threshold is not None:
        heat = threshold_scale(heat, threshold)
    coloured = cv2.applyColorMap((np.clip(heat, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    coloured = cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB)
    return (image.astype(np.float32) * (1 - alpha) + coloured.astype(np.float32) * alpha).astype(np.uint8)


class Window(NamedTuple):
    """A square of a heatmap: its top-left corner and side in the map's pixels, and its highest value."""

    top: int
    left: int
    side: int
    peak: float


def worst_windows(heat: np.ndarray, k: int = 3, side: int = 256) -> list[Window]:
    """The `k` highest-scoring squares of a (H, W) heatmap that do not overlap, highest first: each is
    centred on a local peak (moved inside the map at its edges) and `peak` is the highest value in it.
    The side shrinks to the map's shorter side; fewer than `k` come back when no more fit.

    Peaks are looked for on a grid of cells a quarter of the side across (the map's maximum per cell),
    so a 16000 x 3000 map costs one pass over its pixels."""
    heat = np.nan_to_num(np.asarray(heat, dtype=np.float32), nan=0.0)
    if heat.ndim != 2 or heat.size == 0 or k < 1:
        return []
    height, width = heat.shape
    side = max(1, min(int(side), height, width))
    cell = max(1, side // 4)
    gh, gw = -(-height // cell), -(-width // cell)
    padded = np.full((gh * cell, gw * cell), -np.inf, dtype=np.float32)
    padded[:height, :width] = heat
    blocks = padded.reshape(gh, cell, gw, cell).transpose(0, 2, 1, 3).reshape(gh, gw, cell * cell)
    where = blocks.argmax(axis=2)
    values = np.take_along_axis(blocks, where[..., None], axis=2)[..., 0]
    chosen: list[Window] = []
    for index in np.argsort(-values, axis=None, kind="stable"):
        i, j = divmod(int(index), gw)
        dy, dx = divmod(int(where[i, j]), cell)
        top = min(max(i * cell + dy - side // 2, 0), height - side)
        left = min(max(j * cell + dx - side // 2, 0), width - side)
        if any(top < w.top + w.side and w.top < top + side and left < w.left + w.side and w.left < left + side
               for w in chosen):
            continue
        chosen.append(Window(top, left, side, float(heat[top:top + side, left:left + side].max())))
        if len(chosen) == k:
            break
    return sorted(chosen, key=lambda w: -w.peak)


def shade_outside(image: np.ndarray, scored: np.ndarray | None, strength: float = 0.65) -> np.ndarray:
    """The RGB uint8 image with the pixels that are not scored (`scored` False, e.g. from
    `Regions.mask`) darkened and tinted red; `scored` None: the image unchanged."""
    if scored is None:
        return image
    out = image.astype(np.float32)
    tint = np.array([120.0, 0.0, 0.0], dtype=np.float32)
    out[~scored] = out[~scored] * (1 - strength) + tint * strength
    return out.astype(np.uint8)


def fit_within(image: np.ndarray, max_side: int) -> np.ndarray:
    """The image (or map) shrunk by area averaging so that neither side exceeds `max_side`; as it is
    when it already fits. For showing a megapixel image whole: a screen shows no more."""
    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def worst_crops(image: np.ndarray, heat: np.ndarray, k: int = 3, side: int = 256,
                threshold: float | None = None) -> list[tuple[np.ndarray, Window]]:
    """The `k` worst squares of the heatmap (`worst_windows`) cut out of the RGB image at full
    resolution with the map blended over them (`overlay_heatmap`), highest first. A map of another
    size than the image is stretched over it first."""
    height, width = image.shape[:2]
    if heat.shape != (height, width):
        heat = cv2.resize(np.asarray(heat, dtype=np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    crops = []
    for w in worst_windows(heat, k, side):
        box = (slice(w.top, w.top + w.side), slice(w.left, w.left + w.side))
        crops.append((overlay_heatmap(image[box], heat[box], threshold=threshold), w))
    return crops
