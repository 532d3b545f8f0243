"""A classifier as one ONNX graph: uint8 resized RGB (batch, size, size, 3) -> probabilities (batch, classes).

The graph does normalisation with the run's mean/std, the 8 symmetric views stacked on the batch axis
(one backbone pass instead of eight), GeM pooling, power normalisation, the head and the softmax.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...engine.onnx import INPUT_NAME, OPSET, OUTPUT_NAME, ExportedGraph, Normalise, example_input, export_onnx


def stacked_dihedral_views(x: torch.Tensor) -> torch.Tensor:
    """The 8 flips and quarter turns of (B, C, H, W) stacked on the batch axis, in the order of
    inspector.models.dihedral_views: (8B, C, H, W), view-major."""
    t = x.transpose(2, 3)
    return torch.cat([x, x.flip(3), x.flip(2), x.flip(2, 3), t, t.flip(3), t.flip(2), t.flip(2, 3)], dim=0)


class ExportableClassifier(nn.Module):
    """The Predictor's model as one graph: uint8 NHWC in, softmax probabilities out.

    For a MultiScaleClassifier the views go through the backbone as one batch (the same numbers as
    the per-view loop of models.py; in PyTorch 1.45x faster, docs/BENCHMARKS.md); a plain timm
    classifier is called as it is.
    """

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.normalise = Normalise(mean, std)
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.normalise(image)
        return torch.softmax(self.logits(x).float(), dim=1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        from ...models import MultiScaleClassifier

        model = self.model
        if not isinstance(model, MultiScaleClassifier):
            return model(x)
        if model.symmetric:
            n = x.shape[0]
            pooled = model._pooled_view(stacked_dihedral_views(x))
            features = pooled.reshape(8, n, pooled.shape[1]).mean(0)
        else:
            features = model._pooled_view(x)
        if model.power_norm:
            features = features.sign() * features.abs().sqrt()
        return model.head(features)


def export_classifier(predictor: Any, path: Path) -> ExportedGraph:
    """Write the classifier's graph to `path` (the shared predictor is not touched)."""
    prep = predictor.preprocessing
    model = copy.deepcopy(predictor.model).float().cpu()
    graph = ExportableClassifier(model, tuple(prep.mean), tuple(prep.std))
    seconds = export_onnx(graph, example_input(prep.image_size), path)
    views = 8 if getattr(model, "symmetric", False) else 1
    return ExportedGraph(path, INPUT_NAME, [OUTPUT_NAME], seconds,
                         {"views": views, "architecture": type(model).__name__, "opset": OPSET})


def compare_probabilities(got: np.ndarray, expected: np.ndarray, bundle: Any, predictor: Any):
    """Parity: (same label (n,), largest |probability difference| per image (n,))."""
    diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    return got.argmax(1) == expected.argmax(1), diff.max(axis=1)
