"""Defect Inspector: train and use visual inspection models from a handful of labeled images.

The public API; the web app and the CLI use nothing else. Names are imported on first use
(PEP 562), so `import inspector.data` or `inspector --help` does not pay for torch and timm.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "augment": ["AUGMENT_PRESETS", "Preprocessing", "build_preview", "build_transform", "resolve_preprocessing"],
    "backbones": ["CATALOGUE", "BackboneStatus", "create_model", "list_backbones", "weight_source"],
    "config": ["TrainConfig"],
    "data": ["LabeledDataset", "ValidationReport", "discover_dataset", "load_image", "validate_dataset"],
    "engine": ["EpochEnd", "Event", "FeatureCache", "QueueCallback", "StepEnd", "TrainEnd", "TrainFailed",
               "TrainStart", "describe_device", "event_from_dict"],
    "errors": ["ImageLoadError", "InspectorError"],
    "evaluation": ["evaluate_predictions"],
    "heatmap": ["overlay_heatmap"],
    "inference": ["Prediction", "Predictor", "Verdict", "load_predictor", "verdict"],
    "jobs": ["BackgroundRunner", "Job", "JobHandle", "JobManager"],
    "runs": ["Run", "RunInfo", "RunStore"],
    "sample_data": ["SAMPLE_CLASSES", "generate_sample_data"],
    "summary": ["RunSummary"],
    "tasks.base": ["Column", "PredictOptions", "Task", "create_task", "list_tasks", "register_task"],
    "tasks.classification": ["Strategy", "choose_strategy", "list_strategies", "register_strategy"],
    "training": ["TrainResult", "train"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'inspector' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
