"""Issue 5, concurrency: two trainings into one runs folder at once, listing runs while they are
written, and double clicks on Train (from one tab or two) that must not start a duplicate run on
the app's background runner."""
from __future__ import annotations

import copy
import json
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from reliability_tools import CLI, SUBPROCESS_ENV, single_threaded, small_dataset

from inspector import TrainConfig, train
from inspector.data import discover_dataset
from inspector.jobs import BackgroundRunner
from inspector.inference import Predictor
from inspector.runs import Run, RunStore


def _overlap(*run_dirs: Path) -> bool:
    """True when the runs were training at the same time (from their events' clocks)."""
    spans = [(events[0]["time"], events[-1]["time"]) for events in (Run(d).events() for d in run_dirs)]
    return max(start for start, _ in spans) < min(end for _, end in spans)


def _list_while(alive, runs: Path) -> tuple[int, set[str]]:
    """List the runs (and read their events) until `alive()` is false, as the Compare page does."""
    listings, statuses = 0, set()
    while alive():
        for info in RunStore(runs).list_runs():  # must never raise
            statuses.add(info.status)
            Run(info.path).events()
        listings += 1
        time.sleep(0.02)
    return listings, statuses


@pytest.mark.slow
def test_two_cli_trainings_at_once_into_one_runs_folder(tmp_path):
    data, runs = small_dataset(tmp_path / "data"), tmp_path / "runs"
    # Fine-tuning for 30 epochs writes for about 10 s, far longer than the two start-ups can drift apart
    # (a 64 px linear probe wrote for under a second, and on a loaded CI machine the two missed each other).
    procs = [subprocess.Popen([*CLI, "train", str(data), "--strategy", "fine_tune", "--epochs", "30",
                               "--image-size", "64", "--no-cv", "--seed", str(seed), "--runs-dir", str(runs), "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=SUBPROCESS_ENV)
             for seed in (1, 2)]
    listings, statuses = _list_while(lambda: any(p.poll() is None for p in procs), runs)
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert len({r["run_id"] for r in results}) == 2 and {r["status"] for r in results} == {"completed"}
    assert {i.run_id: i.status for i in RunStore(runs).list_runs()} == {r["run_id"]: "completed" for r in results}
    assert _overlap(*(Path(r["run_dir"]) for r in results))
    assert listings > 5 and "running" in statuses
    for result in results:
        assert Predictor.from_run(result["run_dir"]).predict(data / "ok" / "ok0.png").label in ("nok", "ok")


def test_two_trainings_at_once_into_one_runs_folder_while_runs_are_listed(tiny_data, tmp_path):
    runs = tmp_path / "runs"
    results, errors = {}, []

    def session(seed: int) -> None:
        config = TrainConfig(strategy="linear_probe", image_size=64, seed=seed, max_folds=2, name=f"session {seed}")
        try:
            results[seed] = train(tiny_data, config, runs_dir=runs)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(seed,)) for seed in (1, 2)]
    with single_threaded():
        for thread in threads:
            thread.start()
        listings, statuses = _list_while(lambda: any(t.is_alive() for t in threads), runs)
        for thread in threads:
            thread.join()

    assert errors == []
    assert listings > 10 and "running" in statuses  # the listing really overlapped the writing
    assert {r.status for r in results.values()} == {"completed"}
    infos = {info.run_id: info for info in RunStore(runs).list_runs()}
    assert set(infos) == {r.run_id for r in results.values()} and len(infos) == 2
    assert _overlap(*(r.run_dir for r in results.values()))
    for seed, result in results.items():
        assert infos[result.run_id].name == f"session {seed}" and infos[result.run_id].status == "completed"
        assert {e["run_id"] for e in Run(result.run_dir).events()} == {result.run_id}  # no crossed writes
        prediction = Predictor.from_run(result.run_dir).predict(min((tiny_data / "ok").iterdir()))
        assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-4)


class _SlowTrainer:
    """Stands in for train(): records each call and holds the first until released."""

    def __init__(self) -> None:
        self.calls: list[TrainConfig] = []
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self, data, config, *, runs_dir, callbacks, stop_event):
        self.calls.append(config)
        self.started.set()
        assert self.release.wait(30)
        return SimpleNamespace(status="completed")


def _wait_finished(*jobs) -> None:
    deadline = time.monotonic() + 30
    while not all(job.finished for job in jobs):
        assert time.monotonic() < deadline, [job.status for job in jobs]
        time.sleep(0.01)


def test_train_clicked_again_while_the_first_is_starting_does_not_duplicate(tiny_data, tmp_path):
    trainer = _SlowTrainer()
    runner = BackgroundRunner(trainer, slots=1)  # one slot: the other training must wait its turn
    config = TrainConfig(strategy="linear_probe", seed=1)
    dataset = discover_dataset(tiny_data)
    barrier = threading.Barrier(8)
    clicks: list = []

    def click() -> None:  # eight clicks at once, from tabs sharing the one runner
        barrier.wait()
        # Each rerun of the Train page submits its own copy of the verified dataset (st.cache_data).
        clicks.append(runner.submit_training(copy.deepcopy(dataset), config, tmp_path))

    threads = [threading.Thread(target=click) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert trainer.started.wait(30)
    clicks.append(runner.submit_training(copy.deepcopy(dataset), config, tmp_path))  # and once more while it runs
    other = runner.submit_training(dataset, config.replace(seed=2), tmp_path)  # another session, other settings
    assert other.status == "queued"  # the slot is taken: the second waits its turn
    trainer.release.set()
    _wait_finished(clicks[0], other)

    assert len({id(job) for job in clicks}) == 1 and len(clicks) == 9
    assert [c.seed for c in trainer.calls] == [1, 2]  # one run per distinct training, in order
    assert clicks[0].status == other.status == "completed"
