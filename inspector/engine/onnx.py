"""ONNX export plumbing shared by every task's exporter (the graphs themselves live in the tasks).

An exported graph takes the *resized* image as uint8 RGB, shape (batch, size, size, 3), and does the
rest itself (normalisation, the task's model). Resizing stays outside, in `inspector.runtime.resize`,
because the ONNX Resize operator cannot reproduce OpenCV's area averaging; parity is checked on it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


class Normalise(nn.Module):
    """uint8 NHWC -> normalised float NCHW, as albumentations' Normalize(max_pixel_value=255)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([m * 255.0 for m in mean], dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([1.0 / (s * 255.0) for s in std], dtype=torch.float32)
                             .view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).to(torch.float32)
        return (x - self.mean) * self.scale


def example_input(image_size: int) -> torch.Tensor:
    """A (2, size, size, 3) uint8 batch to trace a graph with (batch 2: the batch axis stays dynamic)."""
    return torch.randint(0, 256, (2, image_size, image_size, 3), dtype=torch.uint8)


def export_onnx(module: nn.Module, example: torch.Tensor, path: Path,
                output_names: list[str] | None = None) -> float:
    """torch.onnx.export (TorchScript exporter, dynamic batch on the input and every output);
    returns the seconds it took. Raises InspectorError when the model cannot be expressed in ONNX."""
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
