"""One background runner for every front end: trainings, short work and exports.

    runner = BackgroundRunner()
    handle = runner.submit_training(dataset, config, runs_dir)      # races on the device's slots
    work = runner.start("export:runs/x", lambda report, stop: ...)  # own thread, one per key
    handle.status, handle.fraction, handle.text, handle.result, handle.error, handle.stop()

A locked registry keyed by handle id. Each handle holds status, progress (a fraction and a text),
result, error and a stop event, changed only under its own lock, so the page thread and the worker
never race. Workers never touch a UI: pages poll handles.

Trainings race: up to `slots` run at the same time, each in a worker process of its own (torch's
thread count is per process), the rest wait in submission order. The device decides the slots
(`inspector.engine.device.race_slots`: on a CPU the cores shared out, at least one thread each; on
a GPU as many as fit in its free memory) and the CPU threads are shared out again whenever a
training starts or ends. Short work runs on a thread of its own. Finished handles are dropped when taken (`take`), or `ttl_s` after they
finished, and at most `max_finished` are kept: a long-lived app process does not grow.

A training's live curves are not kept here: they are read from its run's metrics.jsonl
(`inspector.runs.MetricsTail`), as for runs started by the CLI, torchrun or Ray. The handle keeps
`run_dir` to find that file once the training announced it (TrainStart).
"""
from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import queue
import sys
import threading
import time
import types
from collections import deque
from pathlib import Path
from typing import Any, Callable

from .config import TrainConfig
from .engine.events import Event, Progress, TrainStart
from .errors import InspectorError

QUEUED, RUNNING, COMPLETED, STOPPED, FAILED = "queued", "running", "completed", "stopped", "failed"
TERMINAL = (COMPLETED, STOPPED, FAILED)
TRAINING, WORK = "training", "work"
Report = Callable[..., None]  # report(fraction=None, text=None)


class JobHandle:
    """One training or piece of background work, safe to read from any thread.

    Status: queued -> running -> completed | stopped | failed (queued -> stopped when stopped
    before it began). Only the runner's worker and `stop()` change it, under the handle's lock.
    """

    def __init__(self, handle_id: str, kind: str, key: str, *, seq: int, config: TrainConfig | None = None,
                 payload: tuple | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.id, self.kind, self.key, self.seq, self.config = handle_id, kind, key, seq, config
        self.submitted = time.time()
        self.stop_event = threading.Event()
        self._clock = clock
        self._lock = threading.Lock()
        self._payload = payload  # (data, runs_dir) of a training; released when it finishes
        self._status, self._fraction, self._text = QUEUED, 0.0, ""
        self._result: Any = None
        self._error: str | None = None
        self._run_id: str | None = None
        self._run_dir: Path | None = None
        self._finished_at: float | None = None
        self._threads: Any = None  # a shared int (multiprocessing.Value) for a training in a worker process

    def __repr__(self) -> str:
        return f"JobHandle({self.id!r}, {self.kind}, {self.status})"

    # -- reading (any thread) ----------------------------------------------------------------
    def _get(self, name: str) -> Any:
        with self._lock:
            return getattr(self, name)

    status = property(lambda self: self._get("_status"))
    fraction = property(lambda self: self._get("_fraction"))
    text = property(lambda self: self._get("_text"))
    result = property(lambda self: self._get("_result"))
    error = property(lambda self: self._get("_error"))
    run_id = property(lambda self: self._get("_run_id"), doc="The training's run id, once it started.")
    run_dir = property(lambda self: self._get("_run_dir"), doc="Its run folder, once TrainStart announced it.")
    job_id = property(lambda self: self.id, doc="Deprecated name of `id`.")

    @property
    def threads(self) -> int | None:
        """CPU threads the training's worker process may use now (None: not in a worker process)."""
        return int(self._threads.value) if self._threads is not None else None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    # -- changing ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask it to stop: a queued one never starts; a training ends within one batch and keeps
        its best model; short work stops where its function checks the stop event."""
        self.stop_event.set()
        with self._lock:
            if self._status == QUEUED:
                self._status, self._finished_at, self._payload = STOPPED, self._clock(), None

    def report(self, fraction: float | None = None, text: str | None = None) -> None:
        """Progress from the worker: a fraction in [0, 1] (clamped) and/or a line of text."""
        with self._lock:
            if fraction is not None:
                self._fraction = min(max(float(fraction), 0.0), 1.0)
            if text is not None:
                self._text = str(text)

    def _begin(self) -> bool:
        """queued -> running; False when it was stopped while it waited."""
        with self._lock:
            if self._status != QUEUED:
                return False
            self._status = RUNNING
            return True

    def _finish(self, status: str, *, result: Any = None, error: str | None = None) -> None:
        with self._lock:
            if self._status in TERMINAL:
                return
            self._status, self._result, self._error = status, result, error
            self._finished_at, self._payload = self._clock(), None  # the data is not needed any more
            if status == COMPLETED:
                self._fraction = 1.0
            run_dir = getattr(result, "run_dir", None)
            if self._run_dir is None and run_dir is not None:
                self._run_dir, self._run_id = Path(run_dir), getattr(result, "run_id", None)

    def _on_event(self, event: Event) -> None:
        """The training's callback: remembers where its run is and a coarse progress."""
        with self._lock:
            if isinstance(event, TrainStart):
                runs_dir = self._payload[1] if self._payload else None
                self._run_id = event.run_id
                # Old trainers' TrainStart had no run_dir: the run store's layout gives it.
                self._run_dir = Path(event.run_dir) if event.run_dir else (
                    Path(runs_dir) / event.run_id if runs_dir is not None else None)
                self._text = "training"
            elif isinstance(event, Progress):  # the whole run's fraction, every phase
                self._fraction = max(self._fraction, min(max(event.fraction, 0.0), 1.0))
                self._text = event.phase

    def _same_training(self, data: Any, config: TrainConfig) -> bool:
        with self._lock:
            return self._payload is not None and self.config == config and self._payload[0] == data

    def _expired(self, now: float, ttl_s: float) -> bool:
        with self._lock:
            return self._finished_at is not None and now - self._finished_at >= ttl_s

    def _finished_time(self) -> float:
        with self._lock:
            return self._finished_at if self._finished_at is not None else float("inf")


class BackgroundRunner:
    """The registry of background handles; trainings race on the device's slots.

    `train_fn(data, config, *, runs_dir, callbacks, stop_event)` defaults to `inspector.train`.
    `slots`: how many trainings run at the same time (None: the device decides, see
    `engine.device.race_slots`; the environment variable INSPECTOR_PARALLEL_TRAININGS overrides it).
    `processes`: each training in a worker process of its own (the default for the real `train`;
    an injected `train_fn` runs on a thread unless asked, as it need not be importable by a worker).
    No thread or process starts until the first training is submitted.
    """

    def __init__(self, train_fn: Callable[..., Any] | None = None, *, slots: int | None = None,
                 processes: bool | None = None, ttl_s: float = 3600.0, max_finished: int = 50,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._train_fn = train_fn
        self._processes = train_fn is None if processes is None else bool(processes)
        self._slots = None if slots is None else max(1, int(slots))
        self.ttl_s, self.max_finished, self._clock = float(ttl_s), int(max_finished), clock
        self._handles: dict[str, JobHandle] = {}
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._waiting: deque[JobHandle] = deque()  # trainings not started yet, in submission order
        self._running: list[JobHandle] = []
        self._context = multiprocessing.get_context("spawn")  # fork would copy torch's threads and locks

    @property
    def slots(self) -> int:
        """How many trainings run at the same time here (decided on first use)."""
        if self._slots is None:
            from .engine.device import race_slots  # torch loads here, not on import

            self._slots = race_slots()
        return self._slots

    # -- submitting --------------------------------------------------------------------------
    def submit_training(self, data: Any, config: TrainConfig, runs_dir: str | Path) -> JobHandle:
        """Queue a training of `data` (best a LabeledDataset already verified: it is not read again).

        An identical training still queued or running is returned instead of a duplicate (a
        double click on Train, from one tab or two, starts one run)."""
        with self._lock:
            self._sweep()
            for handle in self._handles.values():
                if handle.kind == TRAINING and not handle.finished and handle._same_training(data, config):
                    return handle
            seq = next(self._seq)
            handle = JobHandle(f"training-{seq}", TRAINING, f"training-{seq}", seq=seq, config=config,
                               payload=(data, Path(runs_dir)), clock=self._clock)
            if self._processes:  # the worker process sees the stop and its thread share through these
                handle.stop_event = self._context.Event()
                handle._threads = self._context.Value("i", 1)
            handle.report(text="queued")
            self._handles[handle.id] = handle
            self._waiting.append(handle)
        self._start_waiting()
        return handle

    def start(self, key: str, fn: Callable[[Report, threading.Event], Any]) -> JobHandle:
        """Run `fn(report, stop_event)` on a thread of its own; its return value is the result.

        One per key at a time: while work of that key runs, its handle is returned and `fn` is
        not started. `report(fraction=None, text=None)` sets the handle's progress."""
        with self._lock:
            self._sweep()
            current = self._latest(key)
            if current is not None and not current.finished:
                return current
            seq = next(self._seq)
            handle = JobHandle(f"work-{seq}", WORK, key, seq=seq, clock=self._clock)
            handle._begin()
            self._handles[handle.id] = handle
        threading.Thread(target=self._run_work, args=(handle, fn), name=f"inspector-work-{key}"[:60],
                         daemon=True).start()
        return handle

    # -- reading -----------------------------------------------------------------------------
    def get(self, handle_id: str) -> JobHandle | None:
        """The handle of that id, or None (never submitted, or dropped)."""
        with self._lock:
            self._sweep()
            return self._handles.get(handle_id)

    def latest(self, key: str) -> JobHandle | None:
        """The newest handle started under `key` still in the registry, or None."""
        with self._lock:
            self._sweep()
            return self._latest(key)

    def take(self, handle_id: str) -> JobHandle | None:
        """The handle of that id; when it has finished it is dropped from the registry (it was read)."""
        with self._lock:
            handle = self._handles.get(handle_id)
            if handle is not None and handle.finished:
                del self._handles[handle_id]
            return handle

    def handles(self, kind: str | None = None) -> list[JobHandle]:
        """Every handle still held (of one kind: "training" or "work"), oldest first."""
        with self._lock:
            self._sweep()
            found = [h for h in self._handles.values() if kind is None or h.kind == kind]
        return sorted(found, key=lambda h: h.seq)

    def active(self, kind: str | None = None) -> list[JobHandle]:
        """The handles queued or running, oldest first."""
        return [h for h in self.handles(kind) if not h.finished]

    # -- internals ---------------------------------------------------------------------------
    def _latest(self, key: str) -> JobHandle | None:
        matching = [h for h in self._handles.values() if h.key == key]
        return max(matching, key=lambda h: h.seq, default=None)

    def _sweep(self) -> None:
        """Drop finished handles older than the TTL, then the oldest beyond `max_finished` (lock held)."""
        now = self._clock()
        for handle_id in [i for i, h in self._handles.items() if h._expired(now, self.ttl_s)]:
            del self._handles[handle_id]
        finished = sorted((h for h in self._handles.values() if h.finished), key=JobHandle._finished_time)
        for handle in finished[:max(len(finished) - self.max_finished, 0)]:
            del self._handles[handle.id]

    def _start_waiting(self) -> None:
        """Start waiting trainings while slots are free, then share the CPU threads out again."""
        slots = self.slots
        with self._lock:
            self._running = [h for h in self._running if not h.finished]
            while self._waiting and len(self._running) < slots:
                handle = self._waiting.popleft()
                if handle.finished:  # stopped while it waited
                    continue
                self._running.append(handle)
                threading.Thread(target=self._run_training, args=(handle,), name=f"inspector-{handle.id}",
                                 daemon=True).start()
            running = list(self._running)
        share = max(1, _cpu_count() // max(len(running), 1))
        for handle in running:
            if handle._threads is not None:
                handle._threads.value = share

    def _run_training(self, handle: JobHandle) -> None:
        try:
            with handle._lock:
                payload = handle._payload
            if payload is None or not handle._begin():  # stopped while it waited
                return
            handle.report(text="preparing")
            if self._train_fn is None:
                from .training import train as train_fn  # torch and timm load here, not on import
                self._train_fn = train_fn
            data, runs_dir = payload
            if self._processes:
                self._train_in_worker(handle, data, runs_dir)
            else:
                self._train_here(handle, data, runs_dir)
        finally:
            self._start_waiting()  # a slot is free: the next one starts

    def _train_here(self, handle: JobHandle, data: Any, runs_dir: Path) -> None:
        try:
            result = self._train_fn(data, handle.config, runs_dir=runs_dir, callbacks=[handle._on_event],
                                    stop_event=handle.stop_event)
            handle._finish(getattr(result, "status", COMPLETED), result=result)
        except InspectorError as exc:
            handle._finish(FAILED, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - the runner must survive any one training
            handle._finish(FAILED, error=f"Training failed unexpectedly: {type(exc).__name__}: {exc}")

    def _train_in_worker(self, handle: JobHandle, data: Any, runs_dir: Path) -> None:
        """One training in a worker process; its messages (run announced, epochs, the end) come back
        on a queue. A worker that dies without a word (killed, out of memory) fails the handle."""
        messages = self._context.Queue()
        worker = self._context.Process(
            target=_worker_main, name=f"inspector-{handle.id}", daemon=True,
            args=(self._train_fn, data, handle.config, runs_dir, handle.stop_event, handle._threads, messages))
        try:
            with _plain_main():
                worker.start()  # pickles the data and the config for the new process
        except Exception as exc:  # noqa: BLE001 - e.g. data that cannot be sent to another process
            handle._finish(FAILED, error=f"The training could not start its worker process: {type(exc).__name__}: "
                                         f"{exc}")
            return
        while True:
            try:
                kind, value = messages.get(timeout=0.5)
            except queue.Empty:
                if worker.is_alive():
                    continue
                handle._finish(FAILED, error=f"The training's worker process ended without a result (exit code "
                                             f"{worker.exitcode}): out of memory, or killed.")
                break
            if kind == "event":
                handle._on_event(value)
            elif kind == "done":
                handle._finish(getattr(value, "status", COMPLETED), result=value)
                break
            else:  # "user_error" | "error"
                handle._finish(FAILED, error=value)
                break
        worker.join(timeout=30)

    @staticmethod
    def _run_work(handle: JobHandle, fn: Callable[[Report, threading.Event], Any]) -> None:
        try:
            result = fn(handle.report, handle.stop_event)
            handle._finish(STOPPED if handle.stop_event.is_set() else COMPLETED, result=result)
        except InspectorError as exc:
            handle._finish(FAILED, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - reported on the page, the app goes on
            handle._finish(FAILED, error=f"{type(exc).__name__}: {exc}")


_MAIN_LOCK = threading.Lock()


@contextlib.contextmanager
def _plain_main():
    """A bare `__main__` while a worker is spawned. Spawn re-runs the parent's main script in the
    child; under Streamlit that is the page being run (and under AppTest a temporary script), which
    must not run again in a training's worker. The real one is put back unless something replaced
    it meanwhile (a page rerun starting)."""
    with _MAIN_LOCK:
        real, placeholder = sys.modules.get("__main__"), types.ModuleType("__main__")
        sys.modules["__main__"] = placeholder
        try:
            yield
        finally:
            if sys.modules.get("__main__") is placeholder and real is not None:
                sys.modules["__main__"] = real


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use (containers, taskset)
    except AttributeError:  # Windows, macOS
        return os.cpu_count() or 1


def _worker_main(train_fn: Callable[..., Any], data: Any, config: TrainConfig, runs_dir: Path,
                 stop_event: Any, threads: Any, messages: Any) -> None:
    """A worker process: one training, its thread share followed between batches, messages home."""
    import torch

    applied = [0]

    def follow_threads() -> None:
        if threads.value != applied[0]:
            applied[0] = max(1, int(threads.value))
            torch.set_num_threads(applied[0])

    def relay(event: Event) -> None:
        follow_threads()
        if isinstance(event, (TrainStart, Progress)):  # the page reads the rest from metrics.jsonl
            messages.put(("event", event))

    follow_threads()
    try:
        messages.put(("done", train_fn(data, config, runs_dir=runs_dir, callbacks=[relay], stop_event=stop_event)))
    except InspectorError as exc:
        messages.put(("user_error", str(exc)))
    except BaseException as exc:  # noqa: BLE001 - reported to the page; the worker ends anyway
        messages.put(("error", f"Training failed unexpectedly: {type(exc).__name__}: {exc}"))


# -- deprecated names (kept importable; new code uses BackgroundRunner and JobHandle) --------------
Job = JobHandle
Work = JobHandle


class JobManager:
    """Deprecated: `BackgroundRunner.submit_training`. Trainings only, one at a time."""

    def __init__(self, train_fn: Callable[..., Any] | None = None, *, runner: BackgroundRunner | None = None) -> None:
        self.runner = runner or BackgroundRunner(train_fn)

    def submit(self, data: Any, config: TrainConfig, runs_dir: str | Path) -> JobHandle:
        return self.runner.submit_training(data, config, runs_dir)

    def jobs(self) -> list[JobHandle]:
        return self.runner.handles(TRAINING)

    def get(self, job_id: str) -> JobHandle | None:
        return self.runner.get(job_id)

    def active(self) -> list[JobHandle]:
        return self.runner.active(TRAINING)


class WorkRunner:
    """Deprecated: `BackgroundRunner.start` and `.latest`. Short work addressed by its key."""

    def __init__(self, runner: BackgroundRunner | None = None) -> None:
        self.runner = runner or BackgroundRunner()

    def start(self, key: str, fn: Callable[[Report, threading.Event], Any]) -> JobHandle:
        return self.runner.start(key, fn)

    def get(self, key: str) -> JobHandle | None:
        return self.runner.latest(key)
