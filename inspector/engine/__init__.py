"""The generic training engine: events, callbacks, devices, loaders, frozen features, the gradient
loop and fitting with a validation plan. It knows no task and no strategy (inspector/tasks/ plugs
into it); `inspector.train` (inspector/training.py) ties it to the run store."""
from __future__ import annotations

from .callbacks import Callback, ConsoleProgress, QueueCallback
from .context import FitContext, FitOutcome, TrainingStopped
from .device import DeviceInfo, describe_device, resolve_device
from .events import CheckpointSaved, EpochEnd, Event, StepEnd, TrainEnd, TrainFailed, TrainStart, event_from_dict
from .features import FeatureCache, default_feature_cache

__all__ = ["Callback", "CheckpointSaved", "ConsoleProgress", "DeviceInfo", "EpochEnd", "Event", "FeatureCache",
           "FitContext", "FitOutcome", "QueueCallback", "StepEnd", "TrainEnd", "TrainFailed", "TrainStart",
           "TrainingStopped", "default_feature_cache", "describe_device", "event_from_dict", "resolve_device"]
