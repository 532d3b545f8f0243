"""Defect Inspector: train and use visual inspection models from a handful of labeled images.

The public API; the web app and the CLI use nothing else.
"""
from __future__ import annotations

from .augment import AUGMENT_PRESETS, Preprocessing, build_preview, build_transform, resolve_preprocessing
from .backbones import CATALOGUE, BackboneStatus, create_model, list_backbones, weight_source
from .config import TrainConfig
from .data import LabeledDataset, ValidationReport, discover_dataset, load_image, validate_dataset
from .engine import (
    EpochEnd,
    Event,
    QueueCallback,
    TrainEnd,
    TrainFailed,
    TrainResult,
    TrainStart,
    describe_device,
    train,
)
from .errors import ImageLoadError, InspectorError
from .evaluation import evaluate_predictions
from .heatmap import overlay_heatmap
from .inference import Prediction, Predictor, Verdict, verdict
from .runs import Run, RunInfo, RunStore
from .strategies import choose_strategy, list_strategies, register_strategy

__version__ = "0.1.0"

__all__ = [
    "AUGMENT_PRESETS", "CATALOGUE", "BackboneStatus", "EpochEnd", "Event", "ImageLoadError", "InspectorError",
    "LabeledDataset", "Prediction", "Predictor", "Preprocessing", "QueueCallback", "Run", "RunInfo", "RunStore",
    "TrainConfig", "TrainEnd", "TrainFailed", "TrainResult", "TrainStart", "ValidationReport", "Verdict",
    "build_preview", "build_transform", "choose_strategy", "create_model", "describe_device", "discover_dataset",
    "evaluate_predictions", "list_backbones", "list_strategies", "load_image", "overlay_heatmap",
    "register_strategy", "resolve_preprocessing", "train", "validate_dataset", "verdict", "weight_source",
]
