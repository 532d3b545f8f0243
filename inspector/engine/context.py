"""What a strategy gets to fit a model: data access, device, events, the stop flag."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..augment import Preprocessing
from ..config import TrainConfig
from .events import Event


class TrainingStopped(Exception):
    """Raised inside the loop when a stop was requested; the trainer keeps the best model."""


@dataclass
class FitContext:
    run_id: str
    config: TrainConfig
    device: torch.device
    classes: list[str]
    preprocessing: Preprocessing
    emit: Callable[[Event], None]
    stop_event: threading.Event = field(default_factory=threading.Event)
    fold: str = "final"
    # Called with (model, epoch, val_accuracy) whenever the kept model improves.
    on_checkpoint: Callable[[torch.nn.Module, int, float | None], None] | None = None
    start_time: float = field(default_factory=time.perf_counter)

    def check_stop(self) -> None:
        if self.stop_event.is_set():
            raise TrainingStopped()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start_time

    @property
    def model_key(self) -> str:
        """Identifies frozen features: same backbone weights + same preprocessing = same features."""
        preprocessing = "|".join(str(value) for value in self.preprocessing.to_dict().values())
        return f"{self.config.backbone}|{self.config.weights_path}|{preprocessing}"


@dataclass
class FitOutcome:
    """A fitted model (best weights loaded) and its predictions on the validation images."""

    model: torch.nn.Module
    best_epoch: int | None
    val_probabilities: np.ndarray | None  # (n_val, n_classes)
    epochs_run: int
    stopped: bool = False
