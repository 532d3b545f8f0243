"""An exported bundle behind the service's predictor interface: `inspector serve RUN --runtime onnx`.

The service then answers with ONNX Runtime (or OpenVINO) instead of PyTorch: the same graph the
line PC would run, checked for parity when it was exported, and 2.4-3x faster per image on these
CPUs (docs/BENCHMARKS.md). It reads the bundle through the bundle's own `predict.py`, so the
service and a line PC share one code path.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InspectorError
from ..tasks.classification.predictor import Prediction
from .parity import load_bundle_module


@dataclass(frozen=True)
class BundlePreprocessing:
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)


@dataclass(frozen=True)
class ScoredImage:
    """An anomaly result as the bundle computes it: score, raw_score, verdict."""

    row: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.row)


@dataclass
class BundlePredictor:
    """Predicts like `load_predictor(run)` does, through an exported bundle folder. Thread-safe."""

    bundle_dir: Path
    run_dir: Path | None = None
    target_frr: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.bundle_dir = Path(self.bundle_dir)
        if not (self.bundle_dir / "labels.json").is_file():
            raise InspectorError(f"{self.bundle_dir} is not an exported bundle (no labels.json).")
        self._bundle = load_bundle_module(self.bundle_dir).Bundle(self.bundle_dir, target_frr=self.target_frr)
        self.task = self._bundle.task
        self.classes = list(self._bundle.classes)
        self.preprocessing = BundlePreprocessing(self._bundle.preprocessing)
        self.device = f"cpu ({self._bundle.backend})"
        if self.task == "anomaly":
            self.ok_classes = list(self._bundle.labels.get("ok_classes") or [])
            self.threshold = float(self._bundle.scale.threshold)
            self.target_frr = self._bundle.target_frr

    def with_target_frr(self, target_frr: float) -> BundlePredictor:
        return BundlePredictor(self.bundle_dir, self.run_dir, target_frr)

    def predict_batch(self, images: list[np.ndarray]) -> list[Any]:
        with self._lock:
            if self.task == "anomaly":
                raw, _ = self._bundle.score(images)
                return [ScoredImage(row) for row in self._bundle.anomaly_rows(raw)]
            probabilities = self._bundle.predict_proba(images)
        return [Prediction(self.classes[int(row.argmax())], int(row.argmax()),
                           {c: float(p) for c, p in zip(self.classes, row)}) for row in probabilities]
