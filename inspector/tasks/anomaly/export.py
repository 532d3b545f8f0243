"""An anomaly run's detector as one ONNX graph: uint8 resized RGB (batch, size, size, 3) -> raw image
score (batch,), patch distance map (batch, H', W') and the input's mean patch features (batch, C), the
familiarity guard's (a tiled image's inputs are its tiles: the runtime combines them). The readable score and the verdict are computed
from the raw score by the runtime (inspector/runtime), with the calibration stored in labels.json."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...engine.onnx import INPUT_NAME, OPSET, ExportedGraph, Normalise, example_input, export_onnx
from ...errors import InspectorError

SCORE_OUTPUT, MAP_OUTPUT, EMBEDDING_OUTPUT = "raw_score", "patch_distances", "embedding"


class ExportableDetector(nn.Module):
    """A PatchDetector as one graph.

    The patch features are the detector's own `_features` (stages, neighbourhood average, upsampling,
    concatenation), called on a twin of the detector whose backbone is this module's float32 copy;
    the nearest-bank distance is one matmul against the memory bank held as a constant:
    sqrt(max(0, min_b(|b|^2 - 2 q.b) + |q|^2)), as `nearest_distance` computes it, without its chunks.
    """

    def __init__(self, detector: Any) -> None:
        super().__init__()
        prep = detector.preprocessing
        self.normalise = Normalise(tuple(prep.mean), tuple(prep.std))
        self.backbone = copy.deepcopy(detector.model).float().cpu().eval()
        self.detector = copy.copy(detector)  # a twin: same settings, this module's backbone
        self.detector.model = self.backbone
        bank = detector.memory_bank_.detach().float().cpu()
        self.register_buffer("bank_t", bank.T.contiguous())
        self.register_buffer("bank_sq", (bank * bank).sum(1))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats = self.detector._features(self.normalise(image))  # (B, H', W', C)
        b, h, w, c = feats.shape
        q = feats.reshape(b, h * w, c)
        nearest = (self.bank_sq - 2.0 * torch.matmul(q, self.bank_t)).min(-1).values + (q * q).sum(-1)
        distances = nearest.clamp_min(0).sqrt().reshape(b, h, w)
        # The input's features averaged over its cells (B, C): the familiarity guard's, per tile.
        return distances.flatten(1).max(1).values, distances, q.mean(1)


def export_detector(predictor: Any, path: Path) -> ExportedGraph:
    """Write the detector's graph to `path`. Raises InspectorError for settings the runtime cannot reproduce."""
    detector = predictor.model.detector
    if detector.config.intensity != "as_is":
        raise InspectorError(f"Anomaly models with intensity '{detector.config.intensity}' cannot be exported "
                             "yet: only 'as_is' is reproduced by the bundle.")
    graph = ExportableDetector(detector)
    names = [SCORE_OUTPUT, MAP_OUTPUT, EMBEDDING_OUTPUT]
    seconds = export_onnx(graph, example_input(predictor.preprocessing.image_size), path, names)
    bank = tuple(detector.memory_bank_.shape)
    return ExportedGraph(path, INPUT_NAME, names, seconds,
                         {"views": 1, "architecture": "PatchDetector", "backbone": detector.config.backbone,
                          "layers": list(detector.config.layers), "bank_size": bank[0], "feature_dim": bank[1],
                          "opset": OPSET})


TIE_RELATIVE = 2e-4  # twice the parity limit (task.MAX_RELATIVE_SCORE_DIFF): a raw score this close to the
# threshold may fall on either side of it by float32 arithmetic alone


def compare_raw_scores(got: np.ndarray, expected: np.ndarray, bundle: Any, predictor: Any):
    """Parity: (same OK/NG verdict (n,), relative raw-score difference (n,)). A different verdict
    counts as the same when the PyTorch score lies on the threshold within float32 reach (a tie)."""
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    tie = np.abs(expected - predictor.threshold) <= TIE_RELATIVE * np.maximum(np.abs(expected), 1e-12)
    agree = ((got > bundle.scale.threshold) == (expected > predictor.threshold)) | tie
    return agree, np.abs(got - expected) / np.maximum(np.abs(expected), 1e-12)
