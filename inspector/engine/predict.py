"""Batched class scores (logits) and probabilities in eval mode: shared by validation, inference and
the export's parity check (no training code)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..augment import inputs_of
from ..runtime.tiling import mean_over_inputs
from .device import autocast, to_device
from .loaders import ImageSet


def predict_logits(model: nn.Module, images: ImageSet, transform, device: torch.device,
                   batch_size: int = 32, pad_batches: bool = False) -> np.ndarray:
    """The model's class scores before the softmax (n, classes) float32, in order (inference_mode,
    eval mode; mixed precision on CUDA as in training). `transform`: an image -> its input tensor, or
    augment.build_inputs (a tiled run's tiles: an image's logits are the mean of its tiles').

    pad_batches: fill the last batch up to batch_size, so a compiled model sees one shape only.
    """
    model.eval()

    def run(batch: torch.Tensor) -> list[np.ndarray]:
        n = len(batch)
        if pad_batches and n < batch_size:
            batch = torch.cat([batch, batch.new_zeros((batch_size - n, *batch.shape[1:]))])
        return [model(to_device(batch, device)).float()[:n].cpu().numpy()]

    with torch.inference_mode(), autocast(device):
        out = mean_over_inputs(images.images, lambda im: inputs_of(transform, im), run, batch_size, torch.stack)
    return out[0] if out else np.zeros((0, 0), dtype=np.float32)


def predict_probabilities(model: nn.Module, images: ImageSet, transform, device: torch.device,
                          batch_size: int = 32, pad_batches: bool = False) -> np.ndarray:
    """Class probabilities for every image, in order: the softmax of `predict_logits`."""
    logits = predict_logits(model, images, transform, device, batch_size, pad_batches)
    return torch.softmax(torch.from_numpy(logits), dim=1).numpy() if len(logits) else logits
