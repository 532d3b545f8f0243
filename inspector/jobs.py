"""Background training jobs: a queue and one worker thread, shared by every browser session.

The web app keeps one JobManager per process (it survives page reloads), submits jobs, and
polls their events; the worker never touches the UI. Jobs run one at a time: on a 2-8 core
plant PC two trainings at once are each slower than one after the other.
"""
from __future__ import annotations

import itertools
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .config import TrainConfig
from .engine.events import Event, TrainStart
from .errors import InspectorError

TERMINAL = ("completed", "stopped", "failed")


@dataclass
class Job:
    """One queued or running training, observable from any thread."""

    job_id: str
    config: TrainConfig
    data: Any
    runs_dir: Path
    status: str = "queued"  # queued | running | completed | stopped | failed
    run_id: str | None = None
    run_dir: Path | None = None
    error: str | None = None
    result: Any = None
    submitted: float = field(default_factory=time.time)
    stop_event: threading.Event = field(default_factory=threading.Event)
    _events: list[Event] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)
            if isinstance(event, TrainStart):
                self.run_id = event.run_id
                self.run_dir = self.runs_dir / event.run_id

    def events(self, since: int = 0) -> list[Event]:
        with self._lock:
            return list(self._events[since:])

    def stop(self) -> None:
        """Ask the training to stop after the current batch (the best model is kept)."""
        self.stop_event.set()
        if self.status == "queued":
            self.status = "stopped"

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


class JobManager:
    """A locked registry of jobs keyed by job id, with one worker thread."""

    def __init__(self, train_fn: Callable[..., Any] | None = None) -> None:
        if train_fn is None:
            from .training import train as train_fn
        self._train = train_fn
        self._jobs: dict[str, Job] = {}
        self._queue: queue.Queue[Job] = queue.Queue()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._worker = threading.Thread(target=self._work, name="inspector-training", daemon=True)
        self._worker.start()

    def submit(self, data: Any, config: TrainConfig, runs_dir: str | Path) -> Job:
        """Queue a training. An identical job still queued or running is returned instead of a
        duplicate (a double click on Train starts one run, not two)."""
        with self._lock:
            for job in self._jobs.values():
                if not job.finished and job.config == config and job.data == data:
                    return job
            job = Job(f"job-{next(self._ids)}", config, data, Path(runs_dir))
            self._jobs[job.job_id] = job
        self._queue.put(job)
        return job

    def jobs(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.submitted)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def active(self) -> list[Job]:
        return [job for job in self.jobs() if not job.finished]

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job.status != "queued":  # stopped while waiting
                continue
            job.status = "running"
            try:
                job.result = self._train(job.data, job.config, runs_dir=job.runs_dir, callbacks=[job.record],
                                         stop_event=job.stop_event)
                job.status = job.result.status
            except InspectorError as exc:
                job.error, job.status = str(exc), "failed"
            except Exception as exc:  # noqa: BLE001 - the worker must survive any one job
                job.error, job.status = f"Training failed unexpectedly: {type(exc).__name__}: {exc}", "failed"


@dataclass
class Work:
    """A short background task that is not a training (e.g. comparing two models' predictions)."""

    key: str
    status: str = "running"  # running | completed | failed
    fraction: float = 0.0
    result: Any = None
    error: str | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)

    @property
    def finished(self) -> bool:
        return self.status != "running"


class WorkRunner:
    """Runs `fn(report_progress, stop_event)` on its own thread, once per key at a time, so a page
    only polls: the Streamlit script thread never does the work."""

    def __init__(self) -> None:
        self._work: dict[str, Work] = {}
        self._lock = threading.Lock()

    def start(self, key: str, fn: Callable[[Callable[[float], None], threading.Event], Any]) -> Work:
        with self._lock:
            current = self._work.get(key)
            if current is not None and not current.finished:
                return current
            work = self._work[key] = Work(key)

        def report(fraction: float) -> None:
            work.fraction = min(max(float(fraction), 0.0), 1.0)

        def body() -> None:
            try:
                work.result = fn(report, work.stop_event)
                work.fraction, work.status = 1.0, "completed"
            except InspectorError as exc:
                work.error, work.status = str(exc), "failed"
            except Exception as exc:  # noqa: BLE001 - reported on the page, the app goes on
                work.error, work.status = f"{type(exc).__name__}: {exc}", "failed"

        threading.Thread(target=body, name=f"inspector-work-{key}", daemon=True).start()
        return work

    def get(self, key: str) -> Work | None:
        with self._lock:
            return self._work.get(key)
