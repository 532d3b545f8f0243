"""What a strategy gets to fit a model: data access, device, events, the stop flag."""
from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..augment import Preprocessing
from ..config import TrainConfig
from .distributed import SINGLE, Ranks
from .events import Event
from .features import FeatureCache
from .loaders import ImageSet

# Called with (model, epoch, val_accuracy) when the kept model improves during a fit.
CheckpointSink = Callable[[torch.nn.Module, int, "float | None"], None]


class TrainingStopped(Exception):
    """Raised inside the loop when a stop was requested; the trainer keeps the best model."""


@dataclass(frozen=True)
class FitContext:
    """Read-only for strategies; the trainer makes one per fit (`for_fold`) instead of mutating it."""

    run_id: str
    config: TrainConfig
    device: torch.device
    classes: list[str]
    preprocessing: Preprocessing
    emit: Callable[[Event], None]
    stop_event: threading.Event = field(default_factory=threading.Event)
    fold: str = "final"
    # Set by the trainer for the kept model only; fold models are never saved.
    checkpoint_sink: CheckpointSink | None = None
    feature_cache: FeatureCache | None = None  # None: the process's default cache
    ranks: Ranks = SINGLE  # the processes of a data-parallel training (torchrun); one by default
    start_time: float = field(default_factory=time.perf_counter)
    # The run's progress tracker (engine/progress.py: start/advance per phase); None when nobody follows
    # the fit. Read it with progress.tracker_of(ctx).
    progress: Any = None
    # Domain adaptation: another line's labelled images (labels index `classes`) and unlabelled images
    # from this line (labels -1); None when absent. Every fold gets all of them: only this line's
    # labelled images are split into folds.
    source: ImageSet | None = None
    unlabeled: ImageSet | None = None

    def check_stop(self) -> None:
        if self.stop_event.is_set():
            raise TrainingStopped()

    def checkpoint(self, model: torch.nn.Module, epoch: int, val_accuracy: float | None) -> None:
        """Engine loops call this when the kept weights improve (a crash later still leaves them)."""
        if self.checkpoint_sink is not None:
            self.checkpoint_sink(model, epoch, val_accuracy)

    def for_fold(self, fold: str) -> FitContext:
        return dataclasses.replace(self, fold=fold, checkpoint_sink=None)

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
    """A fitted model (best weights loaded) and its predictions on the validation images.

    best_epoch is None when no model was fitted (stopped before the first epoch ended)."""

    model: torch.nn.Module
    best_epoch: int | None
    val_probabilities: np.ndarray | None  # (n_val, n_outputs)
    stopped: bool = False
    # Figures the strategy measured besides the epochs (e.g. a transfer run's guard), JSON-ready; the kept
    # model's are added to the run's summary metrics.
    figures: dict[str, Any] | None = None
