"""An exported bundle behind the service's predictor interface: `inspector serve RUN --runtime onnx`.

The service then answers with ONNX Runtime (or OpenVINO) instead of PyTorch: the same graph the
line PC would run, checked for parity when it was exported, and 2.4-3x faster per image on these
CPUs (docs/BENCHMARKS.md). It reads the bundle with `inspector.runtime`, the code the bundle
carries as inspector_runtime/, so the service and a line PC share one code path.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..runtime import Bundle


@dataclass(frozen=True)
class BundlePreprocessing:
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)


@dataclass(frozen=True)
class BundleResult:
    """One image's result row as the bundle computes it (runtime/rows.py). Its keys read as
    attributes, as on the PyTorch predictions: label, confidence, probabilities (classifiers);
    score, raw_score, verdict (anomaly models)."""

    row: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.row)

    def __getattr__(self, name: str) -> Any:
        if name == "row":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        try:
            return self.row[name]
        except KeyError:
            raise AttributeError(f"This result has no {name!r} (it has {', '.join(self.row)}).") from None


@dataclass
class BundlePredictor:
    """Predicts like `load_predictor(run)` does, through an exported bundle folder. Thread-safe.

    Besides task, classes, preprocessing and device it carries the bundle's output fields (anomaly
    models: scale, threshold, target_frr, ok_classes). Raises InspectorError if the folder is no
    bundle or target_frr is outside (0, 1)."""

    bundle_dir: Path
    run_dir: Path | None = None
    target_frr: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.bundle_dir = Path(self.bundle_dir)
        self._bundle = Bundle(self.bundle_dir, target_frr=self.target_frr)
        self.task = self._bundle.task
        self.classes = list(self._bundle.classes)
        self.preprocessing = BundlePreprocessing(self._bundle.preprocessing)
        self.device = f"cpu ({self._bundle.backend})"
        vars(self).update(self._bundle.outputs.fields())

    def with_target_frr(self, target_frr: float) -> BundlePredictor:
        return BundlePredictor(self.bundle_dir, self.run_dir, target_frr)

    def predict_batch(self, images: list[np.ndarray]) -> list[BundleResult]:
        """One result per RGB uint8 image, without OK classes (the task's hooks apply those)."""
        with self._lock:
            rows = self._bundle.rows(images, ok_classes=[])
        return [BundleResult(row) for row in rows]

    def predict_proba(self, images: list[np.ndarray]) -> np.ndarray:
        """Classifiers: probabilities (n, classes)."""
        with self._lock:
            return self._bundle.predict_proba(images)

    def score(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Anomaly models: raw scores (n,) and patch-distance maps (n, H', W')."""
        with self._lock:
            return self._bundle.score(images)
