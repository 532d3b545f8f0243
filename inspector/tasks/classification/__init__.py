"""Classification: learn defect classes from labelled images of every class.

    task.py        the task (registered on import): model, validation, metrics, predictor loading
    strategies.py  the transfer strategies and their registry (@register_strategy)
    linear.py      the linear probe's shrinkage-LDA head
    predictor.py   inference: classes, probabilities, Grad-CAM, OK/NG

Names are imported on first use, so loading a predictor does not load the training strategies.
"""
from __future__ import annotations

import importlib
from typing import Any

from .task import ClassificationTask

_WHERE = {**dict.fromkeys(["STRATEGIES", "Strategy", "choose_strategy", "create_strategy", "list_strategies",
                           "register_strategy"], "strategies"),
          **dict.fromkeys(["ClassificationPredictor", "Prediction", "Verdict", "verdict"], "predictor")}
__all__ = sorted([*_WHERE, "ClassificationTask"])


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
