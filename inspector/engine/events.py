"""Typed training events. A UI in another thread draws live curves from them; the run store
appends them to metrics.jsonl as they happen."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from ..summary import RunSummary


@dataclass(frozen=True)
class Event:
    run_id: str
    time: float = field(default_factory=time.time, kw_only=True)

    @property
    def kind(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class TrainStart(Event):
    backbone: str
    strategy: str
    strategy_reason: str
    device: str
    classes: list[str]
    n_images: int
    validation: str  # plain-words description of the validation plan
    epochs: int
    run_dir: str | None = None  # where metrics.jsonl is (None in runs written before it was recorded)


@dataclass(frozen=True)
class StepEnd(Event):
    """One batch done. phase: "features" (frozen-feature extraction) or "train"."""

    phase: str
    step: int
    steps: int
    epoch: int
    lr: float | None
    images_per_s: float
    elapsed_s: float
    fold: str = "final"


@dataclass(frozen=True)
class Progress(Event):
    """Where the whole run stands, at least every ~2 s of work in every phase (engine/progress.py).

    phase: one word of engine.progress.PHASES (decoding, features, head, training, coreset,
    calibration, bank, scoring, evaluation), the same in the app, the CLI and metrics.jsonl.
    done / total: units of `unit` ("images", "batches", "patches", "steps") of this phase (and fold).
    fraction: of the whole run, 0..1, never decreasing. eta_s: seconds left for the whole run
    (None only when nothing is planned). images_per_s: smoothed over the last few seconds, None
    in phases that do not go through images. detail: figures a task shows live (e.g. an anomaly
    run's bank_size, epoch/epochs of fine-tuning); JSON values only.
    """

    phase: str
    done: float
    total: float
    unit: str
    fraction: float
    eta_s: float | None
    images_per_s: float | None = None
    fold: str = "final"
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EpochEnd(Event):
    epoch: int
    epochs: int
    train_loss: float
    val_loss: float | None
    val_accuracy: float | None
    val_macro_f1: float | None
    lr: float | None  # None where no learning rate applies (the linear probe's closed-form head)
    images_per_s: float
    elapsed_s: float
    eta_s: float
    device: str
    device_memory_mb: float | None
    fold: str = "final"  # "final" for the model that is kept, "k/K" during cross-validation
    # The epoch means of the loss's separate terms, by name, when the objective has several (e.g. a
    # transfer run's "L_s", "L_t", "D"); None otherwise and in event files written before it existed.
    terms: dict[str, float] | None = None


@dataclass(frozen=True)
class CheckpointSaved(Event):
    epoch: int
    val_accuracy: float | None


@dataclass(frozen=True)
class TrainEnd(Event):
    status: str  # completed | stopped
    summary: dict[str, Any]  # RunSummary.to_dict(): read it with `run_summary`

    @property
    def run_summary(self) -> RunSummary:
        return RunSummary.from_dict(self.summary)


@dataclass(frozen=True)
class TrainFailed(Event):
    message: str
    user_error: bool  # True: the user can fix it (bad data, no network); False: a bug or OOM


EVENT_TYPES = {cls.__name__: cls for cls in (TrainStart, Progress, StepEnd, EpochEnd, CheckpointSaved, TrainEnd, TrainFailed)}


def event_from_dict(data: dict[str, Any]) -> Event | None:
    """The typed event of one metrics.jsonl line; None for a line of an unknown kind."""
    data = dict(data)
    cls = EVENT_TYPES.get(data.pop("event", None))
    if cls is None:
        return None
    if cls is TrainEnd and "summary" not in data:  # written before RunSummary existed
        data["summary"] = {k: data[k] for k in ("val_accuracy", "val_accuracy_ci", "val_macro_f1", "train_seconds",
                                                "best_epoch") if k in data}
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})
