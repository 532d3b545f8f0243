"""Training engine: events, callbacks, devices, loops and the `train()` entry point."""
from __future__ import annotations

from .callbacks import Callback, ConsoleProgress, QueueCallback
from .context import TrainingStopped
from .device import DeviceInfo, describe_device, resolve_device
from .events import CheckpointSaved, EpochEnd, Event, StepEnd, TrainEnd, TrainFailed, TrainStart, event_from_dict
from .training import TrainResult, train

__all__ = ["Callback", "CheckpointSaved", "ConsoleProgress", "DeviceInfo", "EpochEnd", "Event", "QueueCallback",
           "StepEnd", "TrainEnd", "TrainFailed", "TrainResult", "TrainStart", "TrainingStopped",
           "describe_device", "event_from_dict", "resolve_device", "train"]
