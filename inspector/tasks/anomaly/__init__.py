"""Anomaly detection from good parts only: the detector (detector.py), the threshold with a
false-reject guarantee (calibration.py), anomaly maps (maps.py), and the task that plugs them into
the trainer (task.py, model.py) and the predictor (predictor.py)."""
from __future__ import annotations

from .calibration import min_guaranteed_frr
from .task import AnomalyTask, good_classes

__all__ = ["AnomalyTask", "good_classes", "min_guaranteed_frr"]
