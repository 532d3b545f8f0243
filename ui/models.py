"""Result rows and heatmaps for the pages, through the run's task hooks, cached per (run weights,
decision settings, image content)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from inspector import Prediction, RunInfo, overlay_heatmap
from inspector.heatmap import fit_within, worst_crops
from inspector.runtime.calibration import ScoreScale
from inspector.tasks.anomaly.maps import THRESHOLD
from inspector.tasks.base import PredictOptions, create_task, decode_for

from .state import predictor


@dataclass(frozen=True)
class Decision:
    """What the user set on the page (hashable, so results are cached per setting):
    the fields of `PredictOptions`, with the classifier named by its run folder."""

    ok_classes: tuple[str, ...] = ()
    threshold: float | None = None
    target_frr: float | None = None
    classifier_dir: str | None = None

    def options(self, with_classifier: bool = True) -> PredictOptions:
        classifier = predictor(self.classifier_dir) if with_classifier and self.classifier_dir else None
        return PredictOptions(self.ok_classes, self.threshold, self.target_frr, classifier)


def _key(run: RunInfo) -> tuple[str, float]:
    weights = Path(run.path) / "model.safetensors"
    return str(run.path), weights.stat().st_mtime if weights.is_file() else 0.0


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def configured(run: RunInfo | str, decision: Decision, with_classifier: bool = True):
    """(the run's task, its shared predictor with the decision applied, the options)."""
    model = predictor(run)
    task = create_task(model.task)
    options = decision.options(with_classifier)
    return task, task.configure(model, options), options


@st.cache_data(show_spinner=False, max_entries=5000)
def _row(run_dir: str, mtime: float, decision: Decision, sha: str, _data: bytes) -> dict:
    task, model, options = configured(run_dir, decision)
    return task.result_rows(model, [decode_for(model, _data)], options)[0]


def result_row(run: RunInfo, data: bytes, decision: Decision) -> dict:
    """The task's result row for one image (what `inspector predict --json` gives for it)."""
    return _row(*_key(run), decision, digest(data), data)


@st.cache_data(show_spinner=False, max_entries=5000)
def _predict(run_dir: str, mtime: float, sha: str, _data: bytes) -> dict:
    return predictor(run_dir).predict(_data).to_dict() | {"classes": predictor(run_dir).classes}


def predict(run: RunInfo, data: bytes) -> Prediction:
    """A classification run's prediction for one image."""
    result = _predict(*_key(run), digest(data), data)
    return Prediction(result["label"], result["classes"].index(result["label"]), result["probabilities"])


DISPLAY_SIDE = 1600  # an image shown whole is shrunk to this many pixels across at most: a screen shows no more
ZOOM_SIDE = 256  # the side of a worst-tile crop in camera pixels (a tiled run's tile, up to MAX_ZOOM_SIDE)
MAX_ZOOM_SIDE = 512


@dataclass(frozen=True)
class HeatView:
    """What the Inspect page shows of one image's heatmap: the whole image with the map blended over it
    (at most DISPLAY_SIDE px across), the image's (height, width), and its worst squares at full
    resolution with their peaks (`inspector.heatmap.worst_crops`)."""

    overlay: np.ndarray
    size: tuple[int, int]
    worst: list


def zoom_side(model) -> int:
    """The side of a worst-tile crop: the run's tile when it is tiled (within ZOOM_SIDE..MAX_ZOOM_SIDE)."""
    tiling = getattr(getattr(model, "preprocessing", None), "tiling", None) or {}
    return int(min(MAX_ZOOM_SIDE, max(ZOOM_SIDE, tiling.get("tile", 0))))


@st.cache_data(show_spinner=False, max_entries=300)
def _view(run_dir: str, mtime: float, decision: Decision, sha: str, _data: bytes, worst: int) -> HeatView:
    _, model, _ = configured(run_dir, decision, with_classifier=False)
    image = decode_for(model, _data)
    heat = model.heatmap(image)
    # A predictor with a readable score scale draws maps with its threshold at THRESHOLD: red past it.
    threshold = THRESHOLD if isinstance(getattr(model, "scale", None), ScoreScale) else None
    shown = overlay_heatmap(fit_within(image, DISPLAY_SIDE), fit_within(heat, DISPLAY_SIDE), threshold=threshold)
    crops = worst_crops(image, heat, worst, zoom_side(model), threshold) if worst else []
    return HeatView(shown, image.shape[:2], crops)


def heat_view(run: RunInfo, data: bytes, decision: Decision = Decision(), worst: int = 0) -> HeatView:
    """The image with the predictor's heatmap blended over it (Grad-CAM of the predicted class, or the
    anomaly map: blue to yellow below the threshold, red past it), shrunk for the screen, and its
    `worst` highest-scoring squares at full resolution."""
    return _view(*_key(run), decision, digest(data), data, worst)


def heatmap_overlay(run: RunInfo, data: bytes, decision: Decision = Decision()) -> np.ndarray:
    """The image with its heatmap blended over it, at most DISPLAY_SIDE px across (see `heat_view`)."""
    return heat_view(run, data, decision).overlay
