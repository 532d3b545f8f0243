"""A classifier as one ONNX graph: uint8 resized RGB (batch, size, size, 3) -> probabilities (batch, classes)
(a tiled run's batch holds tiles: the bundle averages each image's tiles' logits and embeddings)
and, as further outputs, the logits (batch, classes) the softmax is taken of and the embedding (batch, D):
the features the head sees, which the familiarity guard (inspector/runtime/familiarity.py) measures.

The graph does normalisation with the run's mean/std, the 8 symmetric views stacked on the batch axis
(one backbone pass instead of eight), GeM pooling, power normalisation, the head and the softmax.
The export's parity check compares the logits (see inspector/deploy/parity.py for why) and, for a run
with a familiarity guard, whether each image lies beyond the guard's limit on both sides.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...engine.onnx import (
    INPUT_NAME,
    OPSET,
    OUTPUT_NAME,
    ExportedGraph,
    Normalise,
    example_input,
    export_onnx,
)
from ...runtime.outputs import EMBEDDING_OUTPUT, LOGITS_OUTPUT


def stacked_dihedral_views(x: torch.Tensor) -> torch.Tensor:
    """The 8 flips and quarter turns of (B, C, H, W) stacked on the batch axis, in the order of
    inspector.models.dihedral_views: (8B, C, H, W), view-major."""
    t = x.transpose(2, 3)
    return torch.cat([x, x.flip(3), x.flip(2), x.flip(2, 3), t, t.flip(3), t.flip(2), t.flip(2, 3)], dim=0)


# Parity: the largest difference of a bundle's logits from the PyTorch model's, relative to the image's
# largest |logit| (at least 1). float32 arithmetic (PyTorch vs ONNX Runtime) measured 2.2e-6 at most on
# a crop-mode linear probe of the sample data, 224 px (logits near 400); a one-pixel shift 1.0e-3 at
# least, a one-grey-level brightening 6.1e-4 at most over its images (deploy/parity.py).
MAX_RELATIVE_LOGIT_DIFF = 1e-4


class ExportableClassifier(nn.Module):
    """The Predictor's model as one graph: uint8 NHWC in, (softmax probabilities, logits, embedding) out.

    For a MultiScaleClassifier the views go through the backbone as one batch (the same numbers as
    the per-view loop of models.py; in PyTorch 1.45x faster, docs/BENCHMARKS.md); a plain timm
    classifier runs its own forward_features and forward_head (what calling it does).
    """

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.normalise = Normalise(mean, std)
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, embedding = self.logits_and_embedding(self.normalise(image))
        logits = logits.float()
        return torch.softmax(logits, dim=1), logits, embedding.float()

    def logits_and_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from ...models import MultiScaleClassifier

        model = self.model
        if not isinstance(model, MultiScaleClassifier):
            return logits_and_embedding(model, x)
        if model.symmetric:
            n = x.shape[0]
            pooled = model._pooled_view(stacked_dihedral_views(x))
            features = pooled.reshape(8, n, pooled.shape[1]).mean(0)
        else:
            features = model._pooled_view(x)
        if model.power_norm:
            features = features.sign() * features.abs().sqrt()
        return model.head(features), features


def logits_and_embedding(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's logits and the features its classifier layer sees (the embedding), from one backbone
    pass: the same numbers as `model(x)` and `models.pooled_features(model, x)`."""
    from ...models import MultiScaleClassifier

    if isinstance(model, MultiScaleClassifier):
        features = model.pooled_features(x)
        return model.head(features), features
    feature_map = model.forward_features(x)  # timm: model(x) is forward_head(forward_features(x))
    return model.forward_head(feature_map), model.forward_head(feature_map, pre_logits=True)


def export_classifier(predictor: Any, path: Path) -> ExportedGraph:
    """Write the classifier's graph to `path` (the shared predictor is not touched)."""
    prep = predictor.preprocessing
    model = copy.deepcopy(predictor.model).float().cpu()
    graph = ExportableClassifier(model, tuple(prep.mean), tuple(prep.std))
    names = [OUTPUT_NAME, LOGITS_OUTPUT, EMBEDDING_OUTPUT]
    seconds = export_onnx(graph, example_input(prep.image_size), path, names)
    views = 8 if getattr(model, "symmetric", False) else 1
    return ExportedGraph(path, INPUT_NAME, names, seconds,
                         {"views": views, "architecture": type(model).__name__, "opset": OPSET})


def torch_outputs(predictor: Any, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The PyTorch predictor's (probabilities, logits), each (n, classes), of RGB uint8 arrays, and its
    familiarity distances (n,) (None without a guard): the predictor's own model and preprocessing, as
    its predict_proba computes them."""
    from ...augment import build_inputs
    from .predictor import model_outputs

    logits, embeddings = model_outputs(predictor.model, list(images), build_inputs(predictor.preprocessing),
                                       predictor.device)
    guard = getattr(predictor, "familiarity", None)
    distances = guard.distance(embeddings) if guard is not None else None
    return torch.softmax(torch.from_numpy(logits), dim=1).numpy(), logits, distances


def bundle_outputs(bundle: Any, images: list[np.ndarray], batch_size: int = 32
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A bundle's (probabilities, logits), each (n, classes), of RGB uint8 arrays, and its familiarity
    distances (n,) (None without a guard): its own resize and model. Raises InspectorError for a bundle
    exported without the logits output."""
    from ...errors import InspectorError

    names = list(bundle.labels.get("outputs") or [])
    if LOGITS_OUTPUT not in names:
        raise InspectorError(f"The bundle in {bundle.folder} has no '{LOGITS_OUTPUT}' output: export the run again.")
    guard = getattr(bundle.outputs, "familiarity", None)
    outputs = bundle.classifier_outputs(list(images), batch_size)  # a tiled model's: means over its tiles
    if len(outputs) == 1:  # no images
        return outputs[0], outputs[0], (np.zeros(0) if guard is not None else None)
    distances = guard.distance(outputs[names.index(EMBEDDING_OUTPUT)]) if guard is not None else None
    return outputs[0], outputs[names.index(LOGITS_OUTPUT)], distances


def relative_logit_diff(got: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Per image: max |logit difference| / the expected logits' largest |logit| (at least 1), (n,).
    float32 error grows with the size of the numbers summed, so it is measured against that size."""
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    scale = np.maximum(np.abs(expected).max(axis=1), 1.0)
    return np.abs(got - expected).max(axis=1) / scale


def compare_logits(got: tuple, expected: tuple, bundle: Any, predictor: Any) -> tuple[np.ndarray, np.ndarray]:
    """Parity: (same label and same familiarity verdict (n,), relative logit difference (n,)). A different
    label counts as the same when the PyTorch model's own top two logits lie within float32 reach of each
    other (2 x MAX_RELATIVE_LOGIT_DIFF of the scale): a tie that either side may break. Likewise an image
    on one side of the familiarity limit and on the other in the bundle, when PyTorch's distance lies
    within MAX_RELATIVE_DISTANCE_DIFF of the limit. A guard on one side only never agrees."""
    got_logits, expected_logits = got[1], np.asarray(expected[1], dtype=np.float64)
    label, their_label = expected_logits.argmax(1), np.asarray(got_logits).argmax(1)
    scale = np.maximum(np.abs(expected_logits).max(axis=1), 1.0)
    rows = np.arange(len(label))
    margin = expected_logits[rows, label] - expected_logits[rows, their_label]
    tie = margin <= 2 * MAX_RELATIVE_LOGIT_DIFF * scale
    return ((label == their_label) | tie) & _same_familiarity(got, expected, predictor), \
        relative_logit_diff(got_logits, expected_logits)


# Parity of the familiarity guard: an image whose PyTorch distance lies within this fraction of the limit
# may fall on either side in the bundle (float32 embeddings; measured differences: docs/BENCHMARKS.md).
MAX_RELATIVE_DISTANCE_DIFF = 1e-3


def _same_familiarity(got: tuple, expected: tuple, predictor: Any) -> np.ndarray:
    got_d, expected_d = _distances(got), _distances(expected)
    n = len(expected[1])
    if got_d is None and expected_d is None:
        return np.ones(n, dtype=bool)
    if got_d is None or expected_d is None:
        return np.zeros(n, dtype=bool)
    limit = predictor.familiarity.limit
    on_the_limit = np.abs(expected_d - limit) <= MAX_RELATIVE_DISTANCE_DIFF * limit
    return ((got_d > limit) == (expected_d > limit)) | on_the_limit


def _distances(outputs: tuple) -> np.ndarray | None:
    return np.asarray(outputs[2], dtype=np.float64) if len(outputs) > 2 and outputs[2] is not None else None


def probability_figures(got: tuple, expected: tuple) -> dict[str, np.ndarray]:
    """Reported beside the logits in parity.json (they do not decide): |probability difference| per image,
    and with a familiarity guard the relative difference of its distances."""
    diff = np.abs(np.asarray(got[0], dtype=np.float64) - np.asarray(expected[0], dtype=np.float64))
    figures = {"max_abs_probability_diff": diff.max(axis=1)}
    got_d, expected_d = _distances(got), _distances(expected)
    if got_d is not None and expected_d is not None:
        figures["max_rel_familiarity_distance_diff"] = np.abs(got_d - expected_d) / np.maximum(expected_d, 1e-12)
    return figures
