"""Callbacks receive every event. Any callable taking an Event is a callback."""
from __future__ import annotations

import queue
import sys
from typing import Callable, TextIO

from .events import EpochEnd, Event, StepEnd, TrainEnd, TrainFailed, TrainStart

Callback = Callable[[Event], None]


class QueueCallback:
    """Puts events on a queue for a UI thread to drain (never calls the UI itself)."""

    def __init__(self, q: queue.Queue | None = None) -> None:
        self.queue: queue.Queue = q if q is not None else queue.Queue()

    def __call__(self, event: Event) -> None:
        self.queue.put(event)


class ConsoleProgress:
    """Human-readable progress lines (the CLI writes them to stderr)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr

    def __call__(self, event: Event) -> None:
        line = self._format(event)
        if line:
            print(line, file=self.stream, flush=True)

    @staticmethod
    def _format(event: Event) -> str | None:
        if isinstance(event, TrainStart):
            return (f"Training {event.backbone} with {event.strategy} on {event.device}: "
                    f"{event.n_images} images, {len(event.classes)} classes ({', '.join(event.classes)}). "
                    f"Strategy: {event.strategy_reason}. Validation: {event.validation}.")
        if isinstance(event, StepEnd) and event.phase == "features" and event.step == event.steps:
            return f"  features extracted: {event.steps} batches, {event.images_per_s:.0f} images/s"
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


def dispatch(callbacks: list[Callback], event: Event) -> None:
    """Send `event` to every callback; a broken UI callback must not kill training."""
    for callback in callbacks:
        try:
            callback(event)
        except Exception as exc:  # noqa: BLE001 - reported, training goes on
            print(f"warning: callback {callback!r} failed: {exc}", file=sys.stderr)
