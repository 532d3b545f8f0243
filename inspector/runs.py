"""The run store: one folder per training run, written atomically, never pickled.

    runs/<run_id>/
      run.json           id, name, status, owner process, summary metrics (rewritten atomically)
      config.json        the TrainConfig
      metrics.jsonl      one event per line, appended while training
      model.safetensors  best weights so far (atomic replace)
      model.json         how to rebuild the model: backbone, classes, preprocessing
      evaluation.json    metrics on the validation images (or cross-validation)

A run whose status says "running" but whose process is gone shows as "interrupted"; its best
checkpoint so far still loads. The owner is a process id *and* a host: a run written by another
machine on a shared folder is judged by its heartbeat (the age of its last write) instead.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from ._io import (
    atomic_write_bytes,
    atomic_write_json,
    read_json,
    storage_error,
    storage_errors,
)
from .errors import InspectorError
from .summary import RunSummary
from .tasks.base import DEFAULT_TASK, create_task

RUN_FILE, CONFIG_FILE, METRICS_FILE = "run.json", "config.json", "metrics.jsonl"
WEIGHTS_FILE, MODEL_FILE, EVALUATION_FILE = "model.safetensors", "model.json", "evaluation.json"
ACTIVE_STATUSES = ("running",)
# A run owned by another host is taken for dead after this long without a write. Every training
# writes at least one event per batch or feature pass; the slowest single step measured (a greedy
# coreset over 200 good images) took 33 s, so 10 minutes leaves a wide margin.
HEARTBEAT_TIMEOUT_S = 600.0
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_NAMING = threading.Lock()  # one run of this process picks its unique name at a time


def default_workspace_root() -> Path:
    """INSPECTOR_WORKSPACE if set, else ~/DefectInspector: the app and the CLI share it."""
    configured = os.environ.get("INSPECTOR_WORKSPACE", "").strip()
    return Path(configured).expanduser() if configured else Path.home() / "DefectInspector"


def default_runs_dir() -> Path:
    """The workspace's run store, so a run trained from the CLI shows up in the app."""
    return default_workspace_root() / "runs"


def clean_name(text: str, max_length: int = 80) -> str:
    """A display name without control characters, trimmed (names are never used as paths)."""
    text = "".join(ch for ch in str(text) if ch.isprintable()).strip()
    return text[:max_length] or "unnamed"


def display_name(backbone: str, strategy: str, taken: Iterable[str] = ()) -> str:
    """The one naming rule for runs, on every page and in the CLI: "<backbone> / <strategy>", with
    the strategy as resolved (e.g. "linear_probe" for "auto", "patch_memory" for an anomaly run),
    made unique against the names in `taken` by " (2)", " (3)"... (see `unique_name`)."""
    return unique_name(f"{backbone} / {strategy}", taken)


def unique_name(name: str, taken: Iterable[str] = ()) -> str:
    """`name` cleaned, or "name (2)", "name (3)"... when it is already in `taken`."""
    name, taken = clean_name(name), set(taken)
    if name not in taken:
        return name
    return next(f"{name} ({k})" for k in range(2, len(taken) + 3) if f"{name} ({k})" not in taken)


def _slug(text: str) -> str:
    return _UNSAFE.sub("-", text).strip("-.")[:40] or "run"


def _process_identity() -> dict[str, Any]:
    proc = psutil.Process()
    return {"pid": proc.pid, "host": socket.gethostname(), "started": proc.create_time()}


def _process_alive(owner: dict[str, Any] | None) -> bool:
    """True when the process that owns a run is still the same live process on this host."""
    if not owner or owner.get("host") != socket.gethostname():
        return False
    try:
        return abs(psutil.Process(int(owner["pid"])).create_time() - float(owner["started"])) < 1.0
    except (psutil.Error, KeyError, ValueError, TypeError):
        return False


def _owner_alive(owner: dict[str, Any] | None, last_write: float) -> bool:
    """Is the run's owner still at work? On this host its process is asked; a run written by
    another machine on a shared folder (a Ray worker, a torchrun node) is judged by its heartbeat:
    its last write must be under HEARTBEAT_TIMEOUT_S old."""
    if owner and owner.get("host") not in (None, socket.gethostname()):
        return time.time() - last_write < HEARTBEAT_TIMEOUT_S
    return _process_alive(owner)


@dataclass
class RunInfo:
    """What the runs list shows. `status` already accounts for dead owner processes."""

    run_id: str
    path: Path
    name: str
    status: str
    created: float
    backbone: str = ""
    strategy: str = ""
    summary: RunSummary | None = None  # None until the run has finished
    has_model: bool = False
    task: str = DEFAULT_TASK  # runs from before tasks existed are classification runs

    @property
    def run_summary(self) -> RunSummary:
        """The summary, or an empty one of the run's task before it has finished."""
        return self.summary or RunSummary(self.task)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of `inspector runs --json`: the run's fields with its summary flat beside them."""
        summary = self.summary.to_dict() if self.summary else {}
        return {"run_id": self.run_id, "run_dir": str(self.path), "name": self.name, "status": self.status,
                "created": self.created, "backbone": self.backbone, "strategy": self.strategy,
                "has_model": self.has_model, **summary, "task": self.task}


def best_run(infos: Iterable[RunInfo]) -> RunInfo | None:
    """The run with the best main figure of its task (the first of its task's `columns`, e.g. the
    validation accuracy, or the AUROC of an anomaly run; higher is better), newest first among equals.
    Runs without that figure (still training, failed, or trained without a validation estimate) come
    after every run with one; None for no runs. Runs of different tasks are ranked by their own figure."""
    def rank(info: RunInfo) -> tuple[bool, float, float]:
        columns = create_task(info.task).columns
        value = info.run_summary.value(columns[0].key) if columns else None
        scored = isinstance(value, (int, float)) and not isinstance(value, bool)
        return scored, float(value) if scored else 0.0, info.created

    return max(infos, key=rank, default=None)


class Run:
    """One run folder. The writing side is used by the trainer; everyone may read."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @property
    def run_id(self) -> str:
        return self.path.name

    def file(self, name: str) -> Path:
        return self.path / name

    # -- reading -------------------------------------------------------------------------
    def record(self) -> dict[str, Any]:
        try:
            data = read_json(self.file(RUN_FILE))
        except FileNotFoundError:
            raise InspectorError(f"{self.path} is not a training run (no {RUN_FILE}).") from None
        except (OSError, ValueError) as exc:
            raise InspectorError(f"The run record in {self.path} is unreadable: {exc}") from exc
        if not isinstance(data, dict):
            raise InspectorError(f"The run record in {self.path} is unreadable.")
        return data

    def info(self) -> RunInfo:
        rec = self.record()
        status = rec.get("status", "unknown")
        if status in ACTIVE_STATUSES and not _owner_alive(rec.get("owner"), self.last_write()):
            status = "interrupted"
        task = rec.get("task") or DEFAULT_TASK
        summary = RunSummary.from_dict({"task": task, **rec["summary"]}) if rec.get("summary") else None
        return RunInfo(self.run_id, self.path, rec.get("name", self.run_id), status, rec.get("created", 0.0),
                       rec.get("backbone", ""), rec.get("strategy", ""), summary,
                       self.file(WEIGHTS_FILE).is_file(), task)

    def last_write(self) -> float:
        """When the run was last written (its heartbeat): the newest of its record and its metrics."""
        times = [f.stat().st_mtime for f in (self.file(RUN_FILE), self.file(METRICS_FILE)) if f.exists()]
        return max(times, default=0.0)

    def events(self) -> list[dict[str, Any]]:
        """Events so far; a half-written last line (process killed mid-append) is ignored."""
        try:
            lines = self.file(METRICS_FILE).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        events = []
        for line in lines:
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events

    def model_files(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(recipe, weights) of the kept model, read without unpickling anything."""
        from safetensors.torch import load_file

        self.record()  # a clear error when this is not a run folder
        if not self.file(WEIGHTS_FILE).is_file():
            raise InspectorError(f"Run {self.run_id} has no trained model yet (it was stopped or failed "
                                 "before the first checkpoint).")
        try:
            return read_json(self.file(MODEL_FILE)), load_file(str(self.file(WEIGHTS_FILE)))
        except Exception as exc:  # noqa: BLE001 - a damaged or foreign file: any parser error
            raise InspectorError(f"The model in {self.path} cannot be loaded: {exc}") from exc

    def evaluation(self) -> dict[str, Any] | None:
        """The stored report as JSON (see `evaluation_report` for the typed view)."""
        try:
            return read_json(self.file(EVALUATION_FILE))
        except (FileNotFoundError, ValueError):
            return None

    def evaluation_report(self) -> Any:
        """The stored report, typed by the run's task (e.g. ClassificationEvaluation,
        DetectionEvaluation); None when there is none or it cannot be read."""
        try:
            return create_task(self.record().get("task")).read_evaluation(self.evaluation())
        except (KeyError, TypeError, ValueError):
            return None

    # -- writing -------------------------------------------------------------------------
    def update(self, **fields: Any) -> None:
        rec = self.record()
        rec.update(fields)
        atomic_write_json(self.file(RUN_FILE), rec)

    def append_event(self, event: dict[str, Any]) -> None:
        # Appending is not atomic, but a half-written last line is ignored by events().
        path = self.file(METRICS_FILE)
        with storage_errors(path), open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(event, ensure_ascii=False) + "\n")
            handle.flush()

    def save_model(self, state_dict: dict, model_meta: dict[str, Any]) -> None:
        """Weights as safetensors and the recipe to rebuild the model as JSON, both atomic."""
        from safetensors.torch import save

        tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
        # Serialised in memory and written by Python, so a full disk is a plain OSError
        # (safetensors' own file writer reports it as its own error type).
        atomic_write_bytes(self.file(WEIGHTS_FILE), save(tensors, metadata={"format": "pt"}))
        atomic_write_json(self.file(MODEL_FILE), model_meta)

    def save_evaluation(self, evaluation: Any) -> None:
        """evaluation.json: a task's typed report (its `to_dict()`) or a plain dict. The run store is
        where reports become JSON."""
        atomic_write_json(self.file(EVALUATION_FILE), evaluation.to_dict() if hasattr(evaluation, "to_dict")
                          else evaluation)


class RunStore:
    """All runs under one folder."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_runs_dir()

    def create(self, config: dict[str, Any], *, backbone: str, strategy: str, name: str | None = None,
               task: str = DEFAULT_TASK) -> Run:
        with storage_errors(self.root):
            self.root.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_id = f"{stamp}-{_slug(backbone)}-{_slug(strategy)}-{uuid.uuid4().hex[:6]}"
        staging = self.root / f".{run_id}.creating"
        try:
            with _NAMING:
                staging.mkdir()
                atomic_write_json(staging / CONFIG_FILE, config)
                taken = self.names()
                atomic_write_json(staging / RUN_FILE, {
                    "run_id": run_id, "status": "running", "created": time.time(), "task": task,
                    "name": unique_name(name, taken) if name else display_name(backbone, strategy, taken),
                    "backbone": backbone, "strategy": strategy, "owner": _process_identity(), "summary": {}})
                # The folder appears complete or not at all: listing never sees a half-made run.
                os.replace(staging, self.root / run_id)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise storage_error(exc, self.root) from exc
        return Run(self.root / run_id)

    def names(self) -> set[str]:
        """The names of the runs in the store (as listed: unique)."""
        return {info.name for info in self.list_runs()}

    def get(self, run_id: str) -> Run:
        if not run_id or _UNSAFE.search(run_id) or run_id.startswith("."):
            raise InspectorError(f"'{run_id}' is not a valid run id.")
        run = Run(self.root / run_id)
        run.record()  # raises a clear error when it is not a run
        return run

    def list_runs(self) -> list[RunInfo]:
        """Every readable run, newest first; folders that are not runs are left out. Names are unique:
        of runs stored under one name (by an older version), the later ones read "name (2)"..."""
        if not self.root.is_dir():
            return []
        infos = []
        for path in self.root.iterdir():
            if path.name.startswith(".") or not path.is_dir():
                continue
            try:
                infos.append(Run(path).info())
            except InspectorError:
                continue
        seen: set[str] = set()
        for info in sorted(infos, key=lambda info: (info.created, info.run_id)):
            info.name = unique_name(info.name, seen)
            seen.add(info.name)
        return sorted(infos, key=lambda info: info.created, reverse=True)

    def rename(self, run_id: str, name: str) -> str:
        """Rename a run; returns the name given, made unique among the other runs (" (2)"...)."""
        run = self.get(run_id)
        with _NAMING:
            final = unique_name(name, {info.name for info in self.list_runs() if info.run_id != run_id})
            run.update(name=final)
        return final

    def delete(self, run_id: str) -> None:
        run = self.get(run_id)
        if run.info().status in ACTIVE_STATUSES:
            raise InspectorError("This run is still training; stop it before deleting it.")
        # Rename first so a half-deleted run never shows up as a broken run.
        trash = self.root / f".{run_id}.deleting"
        with storage_errors(run.path, "delete"):
            os.replace(run.path, trash)
        shutil.rmtree(trash, ignore_errors=True)


class MetricsTail:
    """Follows one run's metrics.jsonl as it grows, for live views.

    Each `read()` parses only the lines appended since the previous one; a line still being
    written (no newline yet) waits for the next read. A file truncated or replaced is read again
    from its start. Every run is watched this way, whoever trains it (the app, the CLI, torchrun,
    Ray). `parse` turns each line's dict into an item (e.g. `event_from_dict`); None drops it.
    Thread-safe: several pages may read one tail.
    """

    def __init__(self, run_dir: str | os.PathLike, parse: Callable[[dict[str, Any]], Any] | None = None) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self._parse = parse
        self._lock = threading.Lock()
        self._offset = 0
        self._identity: tuple[int, int] | None = None
        self._items: list[Any] = []

    @property
    def offset(self) -> int:
        """Bytes of the file consumed so far (always at the end of a complete line)."""
        with self._lock:
            return self._offset

    def read(self) -> list[Any]:
        """Every item so far (a new list), after reading what was appended.

        Raises:
            StorageError: the file exists but cannot be read (permissions, a vanished share).
        """
        with self._lock:
            self._read_new()
            return list(self._items)

    def read_new(self) -> list[Any]:
        """Only the items appended since the last read."""
        with self._lock:
            return self._read_new()

    def _read_new(self) -> list[Any]:
        try:
            handle = open(self.path, "rb")
        except FileNotFoundError:  # the run has not written its first event yet
            return []
        except OSError as exc:
            raise storage_error(exc, self.path, "read") from exc
        with handle:
            stat = os.fstat(handle.fileno())
            identity = (stat.st_dev, stat.st_ino)
            if identity != self._identity or stat.st_size < self._offset:  # replaced or truncated
                self._identity, self._offset, self._items = identity, 0, []
            handle.seek(self._offset)
            chunk = handle.read()
        end = chunk.rfind(b"\n") + 1  # only complete lines; the rest is read again next time
        self._offset += end
        new = []
        for line in chunk[:end].splitlines():
            try:
                data = json.loads(line)
            except ValueError:  # a line broken by a process killed mid-append
                continue
            if isinstance(data, dict):
                item = self._parse(data) if self._parse else data
                if item is not None:
                    new.append(item)
        self._items.extend(new)
        return new
