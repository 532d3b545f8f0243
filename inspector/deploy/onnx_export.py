"""The exportable graph of a trained run, and its ONNX export: one exporter per task.

The graph takes the *resized* image as uint8 RGB, shape (batch, size, size, 3), and does the rest
itself: normalisation with the run's mean/std, channel order, the 8 symmetric views stacked on the
batch axis (one backbone pass instead of eight), GeM pooling, power normalisation, the head and
the softmax. Resizing stays outside (predict.py does it in numpy the way OpenCV does), because the
ONNX Resize operator cannot reproduce OpenCV's area averaging, and parity is checked on it.

Each task registers its exporter with `register_exporter(task)`; it receives the Predictor and writes
the ONNX file, returning what the bundle needs to know about the graph. Anomaly runs export the
detector (`ExportableDetector`): the same uint8 input, raw image scores and patch distance maps out.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import InspectorError

INPUT_NAME, OUTPUT_NAME = "image", "probabilities"
OPSET = 17


@dataclass(frozen=True)
class ExportedGraph:
    """What an exporter wrote: the file, its input/output names and how long it took."""

    path: Path
    input_name: str
    output_names: list[str]
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)


Exporter = Callable[[Any, Path], ExportedGraph]  # (Predictor, onnx_path) -> ExportedGraph
_EXPORTERS: dict[str, Exporter] = {}


def register_exporter(task: str) -> Callable[[Exporter], Exporter]:
    """Decorator: `fn(predictor, onnx_path) -> ExportedGraph` exports runs of `task`."""
    def decorate(fn: Exporter) -> Exporter:
        _EXPORTERS[task] = fn
        return fn
    return decorate


def list_exporters() -> list[str]:
    return sorted(_EXPORTERS)


def create_exporter(task: str) -> Exporter:
    if task not in _EXPORTERS:
        raise InspectorError(f"Runs of the task '{task}' cannot be exported yet; exportable tasks: "
                             f"{', '.join(list_exporters())}.")
    return _EXPORTERS[task]


def task_of_run(run_dir: str | Path) -> str:
    """The run's task from its model.json (runs stored before tasks existed are classification)."""
    from .._io import read_json
    from ..runs import MODEL_FILE

    try:
        return str(read_json(Path(run_dir) / MODEL_FILE).get("task") or "classification")
    except Exception:  # noqa: BLE001 - no model yet: loading the predictor says so plainly
        return "classification"


def load_run_predictor(run_dir: str | Path) -> Any:
    """The run's predictor on the CPU, for any task the library knows."""
    try:
        from ..inference import load_predictor
    except ImportError:  # a library from before tasks: classification only
        from ..inference import Predictor

        return Predictor.from_run(run_dir, device="cpu")
    return load_predictor(run_dir, device="cpu")


class _Normalise(nn.Module):
    """uint8 NHWC -> normalised float NCHW, as albumentations' Normalize(max_pixel_value=255)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([m * 255.0 for m in mean], dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([1.0 / (s * 255.0) for s in std], dtype=torch.float32)
                             .view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).to(torch.float32)
        return (x - self.mean) * self.scale


def stacked_dihedral_views(x: torch.Tensor) -> torch.Tensor:
    """The 8 flips and quarter turns of (B, C, H, W) stacked on the batch axis, in the order of
    inspector.models.dihedral_views: (8B, C, H, W), view-major."""
    t = x.transpose(2, 3)
    return torch.cat([x, x.flip(3), x.flip(2), x.flip(2, 3), t, t.flip(3), t.flip(2), t.flip(2, 3)], dim=0)


class ExportableClassifier(nn.Module):
    """The Predictor's model as one graph: uint8 NHWC in, softmax probabilities out.

    For a MultiScaleClassifier the views go through the backbone as one batch (the same numbers as
    the per-view loop of models.py; in PyTorch 1.45x faster, docs/deploy_benchmark.md); a plain
    timm classifier is called as it is.
    """

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.normalise = _Normalise(mean, std)
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.normalise(image)
        return torch.softmax(self.logits(x).float(), dim=1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        from ..models import MultiScaleClassifier

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


def export_onnx(module: nn.Module, example: torch.Tensor, path: Path,
                output_names: list[str] | None = None) -> float:
    """torch.onnx.export (TorchScript exporter, dynamic batch on the input and every output);
    returns the seconds it took."""
    outputs = output_names or [OUTPUT_NAME]
    start = time.perf_counter()
    module = module.eval().to(memory_format=torch.contiguous_format)
    try:
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(module, (example,), str(path), input_names=[INPUT_NAME], output_names=outputs,
                              dynamic_axes={name: {0: "batch"} for name in [INPUT_NAME, *outputs]},
                              opset_version=OPSET, do_constant_folding=True, dynamo=False)
    except Exception as exc:  # noqa: BLE001 - an operator ONNX lacks, a tracer failure...
        raise InspectorError(f"This model cannot be converted to ONNX ({type(exc).__name__}: {exc}).") from exc
    return time.perf_counter() - start


@register_exporter("classification")
def export_classifier(predictor: Any, path: Path) -> ExportedGraph:
    """A classification run: probabilities (batch, classes) from the resized uint8 image."""
    import copy

    prep = predictor.preprocessing
    model = copy.deepcopy(predictor.model).float().cpu()  # the shared Predictor is not touched
    graph = ExportableClassifier(model, tuple(prep.mean), tuple(prep.std))
    example = torch.randint(0, 256, (2, prep.image_size, prep.image_size, 3), dtype=torch.uint8)
    seconds = export_onnx(graph, example, path)
    views = 8 if getattr(model, "symmetric", False) else 1
    return ExportedGraph(path, INPUT_NAME, [OUTPUT_NAME], seconds,
                         {"views": views, "architecture": type(model).__name__, "opset": OPSET})


SCORE_OUTPUT, MAP_OUTPUT = "raw_score", "patch_distances"


class ExportableDetector(nn.Module):
    """An anomaly run's PatchDetector as one graph: uint8 NHWC in, (raw image score (batch,), patch
    distance map (batch, H', W')) out.

    The patch features are the detector's own `_features` (stages, neighbourhood average, upsampling,
    concatenation), called on a twin of the detector whose backbone is this module's float32 copy;
    the nearest-bank distance is one matmul against the memory bank held as a constant:
    sqrt(max(0, min_b(|b|^2 - 2 q.b) + |q|^2)), as `nearest_distance` computes it, without its chunks.
    """

    def __init__(self, detector: Any) -> None:
        import copy

        super().__init__()
        prep = detector.preprocessing
        self.normalise = _Normalise(tuple(prep.mean), tuple(prep.std))
        self.backbone = copy.deepcopy(detector.model).float().cpu().eval()
        self.detector = copy.copy(detector)  # a twin: same settings, this module's backbone
        self.detector.model = self.backbone
        bank = detector.memory_bank_.detach().float().cpu()
        self.register_buffer("bank_t", bank.T.contiguous())
        self.register_buffer("bank_sq", (bank * bank).sum(1))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.detector._features(self.normalise(image))  # (B, H', W', C)
        b, h, w, c = feats.shape
        q = feats.reshape(b, h * w, c)
        nearest = (self.bank_sq - 2.0 * torch.matmul(q, self.bank_t)).min(-1).values + (q * q).sum(-1)
        distances = nearest.clamp_min(0).sqrt().reshape(b, h, w)
        return distances.flatten(1).max(1).values, distances


@register_exporter("anomaly")
def export_detector(predictor: Any, path: Path) -> ExportedGraph:
    """An anomaly run: raw image scores (batch,) and patch distance maps (batch, H', W') from the
    resized uint8 image. The readable score and the verdict are computed from them in predict.py."""
    detector = predictor.model.detector
    if detector.config.intensity != "as_is":
        raise InspectorError(f"Anomaly models with intensity '{detector.config.intensity}' cannot be exported "
                             "yet: only 'as_is' is reproduced in predict.py.")
    prep = predictor.preprocessing
    graph = ExportableDetector(detector)
    example = torch.randint(0, 256, (2, prep.image_size, prep.image_size, 3), dtype=torch.uint8)
    seconds = export_onnx(graph, example, path, [SCORE_OUTPUT, MAP_OUTPUT])
    bank = tuple(detector.memory_bank_.shape)
    return ExportedGraph(path, INPUT_NAME, [SCORE_OUTPUT, MAP_OUTPUT], seconds,
                         {"views": 1, "architecture": "PatchDetector", "backbone": detector.config.backbone,
                          "layers": list(detector.config.layers), "bank_size": bank[0], "feature_dim": bank[1],
                          "opset": OPSET})
