"""Batched class scores (logits) and probabilities in eval mode: shared by validation, inference and
the export's parity check (no training code)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .device import autocast, to_device
from .loaders import ImageSet


def predict_logits(model: nn.Module, images: ImageSet, transform, device: torch.device,
                   batch_size: int = 32, pad_batches: bool = False) -> np.ndarray:
    """The model's class scores before the softmax (n, classes) float32, in order (inference_mode,
    eval mode; mixed precision on CUDA as in training).

    pad_batches: fill the last batch up to batch_size, so a compiled model sees one shape only.
    """
    model.eval()
    out = []
    with torch.inference_mode(), autocast(device):
        for first in range(0, len(images), batch_size):
            batch = torch.stack([transform(im) for im in images.images[first:first + batch_size]])
            n = len(batch)
            if pad_batches and n < batch_size:
                batch = torch.cat([batch, batch.new_zeros((batch_size - n, *batch.shape[1:]))])
            out.append(model(to_device(batch, device)).float()[:n].cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def predict_probabilities(model: nn.Module, images: ImageSet, transform, device: torch.device,
                          batch_size: int = 32, pad_batches: bool = False) -> np.ndarray:
    """Class probabilities for every image, in order: the softmax of `predict_logits`."""
    logits = predict_logits(model, images, transform, device, batch_size, pad_batches)
    return torch.softmax(torch.from_numpy(logits), dim=1).numpy() if len(logits) else logits
