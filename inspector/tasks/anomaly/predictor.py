"""The anomaly task's predictor: a readable score (0.5 at the threshold), the raw distance, an OK/NG
verdict and an anomaly map per image. The target false-reject rate can be changed without retraining:
the good images' out-of-sample scores are stored with the model."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from ...augment import letterbox_box
from ...errors import InspectorError
from ..classification.predictor import ImageInput, as_rgb_array
from ...runtime.familiarity import read_guard
from ...runtime.rows import familiarity_row
from .calibration import ScoreScale, calibrate, frr_guarantee_message
from .maps import anomaly_map, normalise_map
from .model import AnomalyModel

MAP_SIDE = 2048  # the largest side at which a heatmap is smoothed


@dataclass(frozen=True)
class AnomalyPrediction:
    score: float  # 0..1, exactly 0.5 at the threshold
    raw_score: float  # the largest patch distance to the good parts' memory bank
    verdict: str  # "OK" or "NG"
    # (distance, limit) from the good images' features (runtime/familiarity.py); None: the run keeps no guard
    familiarity: tuple[float, float] | None = None

    @property
    def ok(self) -> bool:
        return self.verdict == "OK"

    def to_dict(self) -> dict[str, Any]:
        """The result row; an image beyond the familiarity limit is UNSURE (rows.familiarity_row)."""
        row = {"score": self.score, "raw_score": self.raw_score, "verdict": self.verdict}
        return row if self.familiarity is None else familiarity_row(row, *self.familiarity)


class AnomalyPredictor:
    """A fitted anomaly model ready for inference. Thread-safe; share one per run."""

    task = "anomaly"

    def __init__(self, model: AnomalyModel, recipe: dict[str, Any], target_frr: float | None = None,
                 run_dir: Path | None = None) -> None:
        if model.calibration_scores_ is None or not len(model.calibration_scores_):
            raise InspectorError("This anomaly model has no calibration scores, so no threshold can be set.")
        self.model = model
        self.recipe = recipe
        self.classes = list(recipe.get("classes", []))
        self.ok_classes = list(recipe.get("ok_classes", []))
        self.preprocessing = model.detector.preprocessing  # the detector's own input size and resize
        self.target_frr = float(target_frr if target_frr is not None else recipe.get("target_frr", 0.05))
        self.scale: ScoreScale = calibrate(model.calibration_scores_, self.target_frr)
        self.familiarity = read_guard(getattr(model.detector, "familiarity_", None))
        self.run_dir = run_dir
        self._lock = threading.Lock()

    @classmethod
    def from_recipe(cls, recipe: dict[str, Any], state: dict[str, torch.Tensor], device: torch.device,
                    target_frr: float | None = None, run_dir: Path | None = None, **_: Any) -> AnomalyPredictor:
        if not recipe.get("detector"):
            raise InspectorError("This anomaly run has no fitted detector.")
        return cls(AnomalyModel.from_state(recipe["detector"], state, device), recipe, target_frr, run_dir)

    @property
    def threshold(self) -> float:
        return self.scale.threshold

    @property
    def device(self) -> torch.device:
        return self.model.detector.device

    @property
    def n_good(self) -> int:
        return len(self.model.calibration_scores_)

    @property
    def frr_warning(self) -> str | None:
        return frr_guarantee_message(self.n_good, self.target_frr)

    def with_target_frr(self, target_frr: float) -> AnomalyPredictor:
        """The same model with the threshold moved to another false-reject target (no retraining)."""
        twin = AnomalyPredictor(self.model, self.recipe, target_frr, self.run_dir)
        twin._lock = self._lock  # one model underneath: one lock
        return twin

    def score(self, images: Sequence[ImageInput]) -> tuple[np.ndarray, np.ndarray]:
        """(raw scores (n,), patch-distance maps (n, H', W')) of the images."""
        arrays = [as_rgb_array(im, self.preprocessing.bit_depth) for im in images]
        with self._lock:
            return self.model.detector.score(arrays)

    def predict_batch(self, images: Sequence[ImageInput]) -> list[AnomalyPrediction]:
        arrays = [as_rgb_array(im, self.preprocessing.bit_depth) for im in images]
        with self._lock:
            scored = self.model.detector.score_all(arrays)
        raw, _ = scored.results()
        if self.familiarity is None:
            return [self._prediction(r) for r in raw]
        distances = self.familiarity.distance(scored.embeddings())
        return [self._prediction(r, (float(d), self.familiarity.limit)) for r, d in zip(raw, distances)]

    def predict(self, image: ImageInput) -> AnomalyPrediction:
        return self.predict_batch([image])[0]

    def _prediction(self, raw: float, familiarity: tuple[float, float] | None = None) -> AnomalyPrediction:
        score = float(self.scale.readable(raw))
        return AnomalyPrediction(score, float(raw), "NG" if raw > self.threshold else "OK", familiarity)

    def heatmap(self, image: ImageInput) -> np.ndarray:
        """The anomaly map at the image's size (H, W) in [0, 1], 0.5 at the threshold (for overlays).
        Large images are smoothed at most MAP_SIDE pixels on the long side, then enlarged (a 16000 x 3000
        strip would otherwise take minutes of Gaussian blur)."""
        array = as_rgb_array(image, self.preprocessing.bit_depth)
        _, maps = self.score([array])
        height, width = array.shape[:2]
        box = None
        if self.preprocessing.resize_mode == "letterbox" and not self.preprocessing.tiling:
            size = self.preprocessing.image_size
            left, top, right, bottom = letterbox_box(self.preprocessing, width, height)
            box = (left / size, top / size, right / size, bottom / size)
        shrink = min(1.0, MAP_SIDE / max(height, width))
        small = (max(1, round(height * shrink)), max(1, round(width * shrink)))
        smooth = anomaly_map(maps[0], small, sigma=max(2.0, min(small) / 64), box=box)
        if shrink < 1.0:
            smooth = cv2.resize(smooth, (width, height), interpolation=cv2.INTER_LINEAR)
        return normalise_map(smooth, self.scale)


def evaluate_detection(predictor: AnomalyPredictor, paths: Sequence[Path], labels: Sequence[str],
                       ok_classes: Sequence[str]) -> dict[str, Any]:
    """AUROC, false-reject and detection rates at the run's threshold on labelled test images.

    Images of an OK class are good; every other class is a defect."""
    from ...evaluation import auroc

    raw = predictor.score(list(paths))[0] if len(paths) else np.zeros(0)
    good = np.array([label in set(ok_classes) for label in labels], dtype=bool)
    flagged = raw > predictor.threshold
    per_class = {c: float(flagged[[lab == c for lab in labels]].mean())
                 for c in dict.fromkeys(labels) if c not in set(ok_classes)}
    return {"task": "anomaly", "auroc": auroc(raw[good], raw[~good]),
            "false_reject_rate": float(flagged[good].mean()) if good.any() else None,
            "detection_rate": float(flagged[~good].mean()) if (~good).any() else None,
            "n_good": int(good.sum()), "n_defect": int((~good).sum()),
            "detection_rate_per_class": per_class, "threshold": predictor.threshold,
            "target_frr": predictor.target_frr, "ok_classes": list(ok_classes)}
