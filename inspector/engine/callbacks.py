"""Callbacks receive every event. Any callable taking an Event is a callback."""
from __future__ import annotations

import queue
import sys
import time
from typing import Callable, TextIO

from .events import EpochEnd, Event, Progress, TrainEnd, TrainFailed, TrainStart
from .progress import PHASES

Callback = Callable[[Event], None]


class QueueCallback:
    """Puts events on a queue for a UI thread to drain (never calls the UI itself)."""

    def __init__(self, q: queue.Queue | None = None) -> None:
        self.queue: queue.Queue = q if q is not None else queue.Queue()

    def __call__(self, event: Event) -> None:
        self.queue.put(event)


def progress_words(event: Progress) -> str:
    """A Progress event in words: "Extracting features (fold 2 of 5): 16 of 40 images" (the CLI, the app)."""
    words = PHASES.get(event.phase, event.phase)
    if event.fold != "final":
        k, _, n = event.fold.partition("/")
        words += f" (fold {k} of {n})"
    if event.total:
        words += f": {event.done:,.0f} of {event.total:,.0f} {event.unit}"
        epoch, epochs = event.detail.get("epoch"), event.detail.get("epochs")
        if event.phase == "training" and epoch and epochs:
            words += f" (epoch {epoch} of {epochs})"
    return words


class ConsoleProgress:
    """Human-readable progress lines (the CLI writes them to stderr): a line when the phase (or fold)
    changes and otherwise at most one every `every_s` seconds, each with the time left."""

    def __init__(self, stream: TextIO | None = None, every_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stderr
        self.every_s, self.clock = every_s, clock
        self._last: tuple[str, str] | None = None
        self._last_line = -float("inf")

    def __call__(self, event: Event) -> None:
        line = self._progress(event) if isinstance(event, Progress) else self._format(event)
        if line:
            print(line, file=self.stream, flush=True)

    def _progress(self, event: Progress) -> str | None:
        now, key = self.clock(), (event.phase, event.fold)
        if key == self._last and now - self._last_line < self.every_s and event.fraction < 1.0:
            return None
        self._last, self._last_line = key, now
        if event.fraction >= 1.0:
            return None  # TrainEnd's line says it is over
        rate = f", {event.images_per_s:.1f} images/s" if event.images_per_s else ""
        eta = "" if event.eta_s is None else f", about {_duration(event.eta_s)} left"
        return f"  [{event.phase}] {progress_words(event)}{rate}; {event.fraction:.0%} done{eta}"

    @staticmethod
    def _format(event: Event) -> str | None:
        if isinstance(event, TrainStart):
            return (f"Training {event.backbone} with {event.strategy} on {event.device}: "
                    f"{event.n_images} images, {len(event.classes)} classes ({', '.join(event.classes)}). "
                    f"Strategy: {event.strategy_reason}. Validation: {event.validation}.")
        if isinstance(event, EpochEnd):
            val = "" if event.val_accuracy is None else (
                f" val_loss {event.val_loss:.3f} val_acc {event.val_accuracy:.3f} f1 {event.val_macro_f1:.3f}")
            lr = "" if event.lr is None else f" lr {event.lr:.2e}"
            return (f"  [{event.fold}] epoch {event.epoch}/{event.epochs} loss {event.train_loss:.3f}{val}{lr} "
                    f"{event.images_per_s:.0f} img/s eta {event.eta_s:.0f}s")
        if isinstance(event, TrainEnd):
            summary = event.run_summary
            figures = ", ".join(f"{name.replace('_', ' ')} {value:.3f}" for name, value in summary.metrics.items()
                                if name.startswith("val_") and isinstance(value, float)) or "no validation figure"
            return f"Training {event.status} in {summary.train_seconds:.1f} s, {figures}"
        if isinstance(event, TrainFailed):
            return f"Training failed: {event.message}"
        return None


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


def dispatch(callbacks: list[Callback], event: Event) -> None:
    """Send `event` to every callback; a broken UI callback must not kill training."""
    for callback in callbacks:
        try:
            callback(event)
        except Exception as exc:  # noqa: BLE001 - reported, training goes on
            print(f"warning: callback {callback!r} failed: {exc}", file=sys.stderr)
