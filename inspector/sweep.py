"""Sweeps: many ordinary trainings (backbones x strategies x seeds), on a Ray cluster when there is one.

Each trial is one `train()` writing its own run folder into the run store, so a sweep's runs show up
live on the app's Train and Compare pages like any other. With Ray installed (`pip install -e
".[cluster]"`), trials are Ray tasks: on the cluster at `ray_address`, or on a local cluster sized to
this machine when no address is given; `runs_dir` must then be a folder every worker can reach.
Without Ray, the trials race on this machine through the app's own background runner: the same
mechanism as the Train page's race (as many at once as the device has slots, the rest queued).
"""
from __future__ import annotations

import importlib.util
import itertools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .config import TrainConfig
from .errors import InspectorError
from .jobs import BackgroundRunner


@dataclass(frozen=True)
class Trial:
    backbone: str
    strategy: str
    seed: int

    def config(self, base: TrainConfig) -> TrainConfig:
        return base.replace(backbone=self.backbone, strategy=self.strategy, seed=self.seed,
                            name=f"sweep {self.backbone} {self.strategy} seed {self.seed}")


@dataclass
class SweepResult:
    engine: str  # "ray" or "local" (this machine's background runner)
    trials: list[dict[str, Any]]  # best first
    wall_seconds: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The CLI's JSON result (`inspector sweep --json`): other tools read these keys."""
        done = [t for t in self.trials if t["status"] == "completed"]
        return {"engine": self.engine, "n_trials": len(self.trials), "n_completed": len(done),
                "wall_seconds": round(self.wall_seconds, 2),
                "sum_train_seconds": round(sum(t["train_seconds"] or 0.0 for t in self.trials), 2),
                "best": self.trials[0] if done else None, "trials": self.trials, "notes": self.notes}


def plan_trials(backbones: Sequence[str], strategies: Sequence[str], seeds: Sequence[int]) -> list[Trial]:
    if not backbones or not strategies or not seeds:
        raise InspectorError("A sweep needs at least one backbone, one strategy and one seed.")
    return [Trial(b, s, int(seed)) for b, s, seed in itertools.product(backbones, strategies, seeds)]


def ray_available() -> bool:
    return importlib.util.find_spec("ray") is not None


def _trial_row(trial: Trial, result: Any = None, error: str | None = None) -> dict[str, Any]:
    row = {"backbone": trial.backbone, "strategy": trial.strategy, "seed": trial.seed, "status": "failed",
           "run_id": None, "run_dir": None, "accuracy": None, "train_seconds": None, "error": error}
    if result is not None:
        row.update(status=result["status"], run_id=result["run_id"], run_dir=result["run_dir"],
                   accuracy=result.get("val_accuracy"), train_seconds=result.get("train_seconds"),
                   strategy=result.get("strategy", trial.strategy))
    return row


def _best_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["status"] != "completed", -(r["accuracy"] if r["accuracy"] is not None
                                                                     else -1.0)))


def _train_trial(data: str, config: dict[str, Any], runs_dir: str, threads: int) -> dict[str, Any]:
    """One trial, in whatever process runs it (a Ray worker): a plain training into the run store."""
    import torch

    from .training import train

    torch.set_num_threads(max(1, threads))
    return train(data, TrainConfig.from_dict(config), runs_dir=runs_dir).to_dict()


def _run_on_ray(data: str, trials: list[Trial], base: TrainConfig, runs_dir: Path, address: str | None,
                gpus_per_trial: float, cpus_per_trial: int, on_trial: Callable[[dict], None]) -> list[dict]:
    import ray

    ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}})
    try:
        remote = ray.remote(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_retries=0)(_train_trial)
        pending = {remote.remote(data, t.config(base).to_dict(), str(runs_dir), cpus_per_trial): t for t in trials}
        rows = []
        while pending:
            [ready], _ = ray.wait(list(pending), num_returns=1)
            trial = pending.pop(ready)
            try:
                row = _trial_row(trial, ray.get(ready))
            except Exception as exc:  # noqa: BLE001 - one failed trial must not end the sweep
                cause = getattr(exc, "cause", None) or exc
                row = _trial_row(trial, error=f"{type(cause).__name__}: {cause}".splitlines()[0])
            rows.append(row)
            on_trial(row)
        return rows
    finally:
        ray.shutdown()


def _run_locally(data: str, trials: list[Trial], base: TrainConfig, runs_dir: Path, slots: int | None,
                 on_trial: Callable[[dict], None]) -> list[dict]:
    """The trials race on this machine's background runner (worker processes, `slots` at a time)."""
    runner, rows = BackgroundRunner(slots=slots), []
    pending = {runner.submit_training(data, trial.config(base), runs_dir).id: trial for trial in trials}
    while pending:
        for handle_id in list(pending):
            job = runner.get(handle_id)
            if job is not None and job.finished:
                trial = pending.pop(handle_id)
                row = _trial_row(trial, job.result.to_dict() if job.result is not None else None, job.error)
                rows.append(row)
                on_trial(row)
        time.sleep(0.2)
    return rows


def run_sweep(data: str | os.PathLike, trials: Sequence[Trial], base: TrainConfig, runs_dir: str | os.PathLike, *,
              ray_address: str | None = None, gpus_per_trial: float = 0, cpus_per_trial: int = 1,
              use_ray: bool | None = None, parallel: int | None = None,
              on_trial: Callable[[dict], None] = lambda row: None) -> SweepResult:
    """Train every trial; results best first. `use_ray=None` uses Ray when it is installed.

    Without Ray, `parallel` trials race at a time on this machine (None: as many as the device has
    slots, `engine.device.race_slots`)."""
    if gpus_per_trial < 0 or cpus_per_trial < 1:
        raise InspectorError("--gpus-per-trial must be 0 or more and the CPUs per trial at least 1.")
    use_ray = ray_available() if use_ray is None else use_ray
    notes = []
    if not use_ray:
        if ray_address:
            raise InspectorError("--ray-address needs Ray: pip install -e \".[cluster]\".")
        from .engine.device import race_slots

        parallel = max(1, int(parallel)) if parallel else race_slots(base.device)
        notes.append(f"Ray is not installed (pip install -e \".[cluster]\"): the trials raced on this machine, "
                     f"{parallel} at a time" + (" (one after the other)." if parallel == 1 else "."))
    runs_dir = Path(runs_dir).expanduser().resolve()
    data = str(Path(data).expanduser().resolve())
    started = time.perf_counter()
    if use_ray:
        rows = _run_on_ray(data, list(trials), base, runs_dir, ray_address, gpus_per_trial, cpus_per_trial, on_trial)
    else:
        rows = _run_locally(data, list(trials), base, runs_dir, parallel, on_trial)
    return SweepResult("ray" if use_ray else "local", _best_first(rows), time.perf_counter() - started, notes)
