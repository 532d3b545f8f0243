"""Read-only views of typed training events for the pages.

One source for every run, whoever trains it (this app, the CLI, torchrun, Ray): the run's
metrics.jsonl, followed by a tail reader that remembers how far it read (MetricsTail), so each
poll parses only the lines appended since the last.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from inspector.engine import EpochEnd, Event, StepEnd, TrainEnd, TrainFailed, TrainStart, event_from_dict
from inspector.engine.callbacks import progress_words
from inspector.engine.events import Progress as ProgressEvent
from inspector.jobs import JobHandle
from inspector.runs import MetricsTail
from inspector.tasks.base import create_task


@st.cache_resource(show_spinner=False, max_entries=64)
def _tail(run_dir: str) -> MetricsTail:
    """One tail per run folder and server process, shared by every session (it is thread-safe)."""
    return MetricsTail(run_dir, parse=event_from_dict)


def run_events(run_dir: str | Path) -> list[Event]:
    """The typed events of a run so far, from its metrics.jsonl (whoever trains it: the app, the CLI,
    torchrun or Ray)."""
    return _tail(str(Path(run_dir))).read()


def handle_events(handle: JobHandle) -> list[Event]:
    """A training handle's events: none while it prepares (its run folder is not announced yet)."""
    run_dir = handle.run_dir
    return run_events(run_dir) if run_dir is not None else []


def epochs(events: list[Event], fold: str | None = "final") -> list[EpochEnd]:
    """EpochEnd events of one fold ("final" = the kept model; None = every fold)."""
    return [e for e in events if isinstance(e, EpochEnd) and (fold is None or e.fold == fold)]


def folds(events: list[Event]) -> list[str]:
    return sorted({e.fold for e in epochs(events, None)} - {"final"}, key=lambda f: int(f.split("/")[0]))


@dataclass(frozen=True)
class Progress:
    fraction: float  # of the whole run, 0..1
    text: str
    images_per_s: float | None = None
    eta_s: float | None = None  # seconds left for the whole run
    device: str | None = None
    memory_mb: float | None = None
    phase: str | None = None  # one of inspector.engine.progress.PHASES


def progress(events: list[Event]) -> Progress:
    """Where a training stands, in words, from its events so far: the latest Progress event (phase,
    "x of y", fraction and time left of the whole run), else the older StepEnd/EpochEnd events (runs
    recorded before Progress existed)."""
    start = next((e for e in events if isinstance(e, TrainStart)), None)
    if start is None:
        return Progress(0.0, "Preparing: reading images and building the model...")
    now = next((e for e in reversed(events) if isinstance(e, ProgressEvent)), None)
    if now is not None:
        text = progress_words(now)
        if now.fold != "final" and now.phase in ("features", "head", "training"):
            text += " (estimating accuracy; the model is already saved)"
        memory = next((e.device_memory_mb for e in reversed(events) if isinstance(e, EpochEnd)), None)
        return Progress(now.fraction, text, now.images_per_s, now.eta_s, start.device, memory, now.phase)
    last = next((e for e in reversed(events) if isinstance(e, (StepEnd, EpochEnd))), None)
    if last is None:
        return Progress(0.0, "Started.", device=start.device)
    return _legacy_progress(start, last)


def _legacy_progress(start: TrainStart, last: StepEnd | EpochEnd) -> Progress:
    """Progress from StepEnd/EpochEnd alone (runs written before the Progress event)."""
    total = max(getattr(last, "epochs", None) or start.epochs or 1, 1)
    if isinstance(last, StepEnd):
        done = last.step / max(last.steps, 1)
        features = last.phase == "features"
        text = ("Extracting features" if features else f"Epoch {last.epoch}") + f": batch {last.step} of {last.steps}"
        within = done if features else (last.epoch - 1 + done) / total  # features: one bar per pass
    else:
        text, within = f"Epoch {last.epoch} of {last.epochs}", last.epoch / total
    if last.fold != "final":
        k, n = (int(x) for x in last.fold.split("/"))
        fraction = (k - 1 + within) / n
        text = f"Cross-validation fold {k} of {n} (estimating accuracy; the model is already saved). {text}"
    else:
        fraction = within
    is_epoch = isinstance(last, EpochEnd)
    eta = last.eta_s if is_epoch and last.fold == "final" else None
    return Progress(min(max(fraction, 0.0), 1.0), text, last.images_per_s, eta, start.device,
                    last.device_memory_mb if is_epoch else None)


def final_event(events: list[Event]) -> TrainEnd | TrainFailed | None:
    return next((e for e in reversed(events) if isinstance(e, (TrainEnd, TrainFailed))), None)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def result_words(summary) -> str:
    """A finished run's figures in one phrase, in its task's words (a RunSummary)."""
    return create_task(summary.task).result_words(summary)
