"""Class-activation heatmaps (Grad-CAM via the maintained `grad-cam` package) and overlays."""
from __future__ import annotations

import math

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
