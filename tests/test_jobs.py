"""The background runner (inspector.jobs) and the metrics tail reader (inspector.runs.MetricsTail):
status transitions under concurrency, stop, one training at a time, one work per key, drop after
read or after a time, and a tail that reads only complete new lines from where it stopped."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from inspector import TrainConfig
from inspector.engine.events import EpochEnd, StepEnd, TrainStart, event_from_dict
from inspector.errors import InspectorError
from inspector.jobs import BackgroundRunner, JobManager, WorkRunner
from inspector.runs import METRICS_FILE, MetricsTail, Run

CONFIG = TrainConfig(strategy="linear_probe", seed=1)


def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def start_event(run_id: str, run_dir: str | None) -> TrainStart:
    return TrainStart(run_id, backbone="b", strategy="s", strategy_reason="r", device="cpu", classes=["a", "b"],
                      n_images=2, validation="v", epochs=2, run_dir=run_dir)


class FakeTrainer:
    """Stands in for train(): announces a run, reports epochs, honours stop; held at will."""

    def __init__(self, *, fail: Exception | None = None) -> None:
        self.calls: list[int] = []
        self.started, self.release = threading.Event(), threading.Event()
        self.fail, self.running, self.most_at_once = fail, 0, 0
        self._lock = threading.Lock()

    def __call__(self, data, config, *, runs_dir, callbacks, stop_event):
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            self.calls.append(config.seed)
            run_dir = Path(runs_dir) / f"run-{config.seed}"
            for callback in callbacks:
                callback(start_event(f"run-{config.seed}", str(run_dir)))
            self.started.set()
            while not self.release.wait(0.01):
                if stop_event.is_set():
                    return SimpleNamespace(status="stopped", run_dir=run_dir, run_id=f"run-{config.seed}")
            if self.fail is not None:
                raise self.fail
            for callback in callbacks:
                callback(EpochEnd(f"run-{config.seed}", epoch=1, epochs=2, train_loss=0.1, val_loss=None,
                                  val_accuracy=None, val_macro_f1=None, lr=None, images_per_s=1.0, elapsed_s=1.0,
                                  eta_s=1.0, device="cpu", device_memory_mb=None))
            return SimpleNamespace(status="completed", run_dir=run_dir, run_id=f"run-{config.seed}")
        finally:
            with self._lock:
                self.running -= 1


def test_a_training_goes_queued_running_completed_and_records_its_run(tmp_path):
    trainer = FakeTrainer()
    runner = BackgroundRunner(trainer)
    handle = runner.submit_training("data", CONFIG, tmp_path)
    assert handle.kind == "training" and handle.status in ("queued", "running")
    assert trainer.started.wait(30)
    assert handle.status == "running" and not handle.finished
    assert handle.run_dir == tmp_path / "run-1" and handle.run_id == "run-1"  # from TrainStart.run_dir
    assert runner.active("training") == [handle]
    trainer.release.set()
    wait_until(lambda: handle.finished)
    assert handle.status == "completed" and handle.fraction == 1.0 and handle.error is None
    assert handle.result.run_id == "run-1" and runner.active() == []


def test_status_is_consistent_while_many_threads_read_and_stop(tmp_path):
    """Readers in many threads see only legal statuses, in order; stop from many threads is safe."""
    trainer = FakeTrainer()
    runner = BackgroundRunner(trainer, slots=1)
    first = runner.submit_training("data", CONFIG, tmp_path)
    waiting = runner.submit_training("data", CONFIG.replace(seed=2), tmp_path)
    order = {"queued": 0, "running": 1, "completed": 2, "stopped": 2, "failed": 2}
    seen: dict[int, list[str]] = {}
    done = threading.Event()

    def watch(k: int) -> None:
        statuses = seen.setdefault(k, [])
        while not done.is_set():
            status = first.status
            if not statuses or statuses[-1] != status:
                statuses.append(status)
            waiting.stop()  # stopping a queued handle, again and again, from every reader

    readers = [threading.Thread(target=watch, args=(k,)) for k in range(6)]
    for reader in readers:
        reader.start()
    assert trainer.started.wait(30)
    trainer.release.set()
    wait_until(lambda: first.finished)
    done.set()
    for reader in readers:
        reader.join()
    for statuses in seen.values():
        assert all(s in order for s in statuses)
        assert [order[s] for s in statuses] == sorted(order[s] for s in statuses)  # never backwards
    assert first.status == "completed"
    assert waiting.status == "stopped" and waiting.finished
    time.sleep(0.1)
    assert trainer.calls == [1]  # the stopped one never started


def test_stop_ends_a_running_training_as_stopped(tmp_path):
    trainer = FakeTrainer()
    runner = BackgroundRunner(trainer)
    handle = runner.submit_training("data", CONFIG, tmp_path)
    assert trainer.started.wait(30)
    handle.stop()
    assert handle.stop_event.is_set()
    wait_until(lambda: handle.finished)
    assert handle.status == "stopped" and handle.run_dir == tmp_path / "run-1"


def test_with_one_slot_trainings_run_one_at_a_time_in_submission_order(tmp_path):
    trainer = FakeTrainer()
    trainer.release.set()
    runner = BackgroundRunner(trainer, slots=1)
    handles = [runner.submit_training("data", CONFIG.replace(seed=seed), tmp_path) for seed in range(1, 6)]
    wait_until(lambda: all(h.finished for h in handles))
    assert trainer.calls == [1, 2, 3, 4, 5] and trainer.most_at_once == 1
    assert [h.status for h in handles] == ["completed"] * 5
    assert [h.id for h in runner.handles("training")] == [h.id for h in handles]


def test_a_handle_follows_the_runs_progress_events_and_never_goes_back():
    from inspector.engine.events import Progress
    from inspector.jobs import JobHandle

    handle = JobHandle("training-1", "training", "training-1", seq=1, config=CONFIG)
    for fraction, phase in ((0.1, "features"), (0.6, "training"), (0.4, "evaluation")):
        handle._on_event(Progress("run", phase=phase, done=1, total=2, unit="images", fraction=fraction, eta_s=5.0))
    assert handle.fraction == 0.6 and handle.text == "evaluation"


def test_trainings_race_on_the_slots_and_the_rest_wait_in_order(tmp_path):
    trainer = FakeTrainer()
    runner = BackgroundRunner(trainer, slots=2)
    handles = [runner.submit_training("data", CONFIG.replace(seed=seed), tmp_path) for seed in range(1, 5)]
    wait_until(lambda: trainer.running == 2)
    assert [h.status for h in handles] == ["running", "running", "queued", "queued"]
    handles[2].stop()  # a waiting one can be cancelled; the next in line takes the free slot
    trainer.release.set()
    wait_until(lambda: all(h.finished for h in handles))
    assert trainer.most_at_once == 2 and trainer.calls == [1, 2, 4]
    assert [h.status for h in handles] == ["completed", "completed", "stopped", "completed"]


def test_the_device_decides_the_slots_and_the_environment_overrides_it(monkeypatch):
    from inspector.engine.device import race_slots

    monkeypatch.delenv("INSPECTOR_PARALLEL_TRAININGS", raising=False)
    assert race_slots("cpu", cores=1) == 1
    assert 1 <= race_slots("cpu", cores=64) <= 64  # bounded by host memory too
    monkeypatch.setenv("INSPECTOR_PARALLEL_TRAININGS", "3")
    assert race_slots("cpu", cores=1) == 3 and BackgroundRunner(FakeTrainer()).slots == 3
    monkeypatch.setenv("INSPECTOR_PARALLEL_TRAININGS", "many")
    with pytest.raises(InspectorError, match="whole number"):
        race_slots("cpu")


def test_a_failed_training_is_reported_and_the_lane_goes_on(tmp_path):
    runner = BackgroundRunner(FakeTrainer(fail=InspectorError("Add more images.")))
    runner._train_fn.release.set()
    failed = runner.submit_training("data", CONFIG, tmp_path)
    wait_until(lambda: failed.finished)
    assert failed.status == "failed" and failed.error == "Add more images."

    broken = BackgroundRunner(FakeTrainer(fail=ZeroDivisionError("boom")))
    broken._train_fn.release.set()
    first = broken.submit_training("data", CONFIG, tmp_path)
    second = broken.submit_training("data", CONFIG.replace(seed=2), tmp_path)
    wait_until(lambda: second.finished)
    assert first.status == second.status == "failed"
    assert "ZeroDivisionError: boom" in first.error and broken._train_fn.calls == [1, 2]


def test_an_identical_training_is_not_queued_twice_but_equal_data_copies_are_recognised(tmp_path):
    trainer = FakeTrainer()
    runner = BackgroundRunner(trainer)
    first = runner.submit_training(["a.png", "b.png"], CONFIG, tmp_path)
    again = runner.submit_training(["a.png", "b.png"], CONFIG, tmp_path)  # an equal copy (a page rerun)
    other_data = runner.submit_training(["a.png"], CONFIG, tmp_path)
    assert again is first and other_data is not first
    trainer.release.set()
    wait_until(lambda: other_data.finished)
    assert runner.submit_training(["a.png", "b.png"], CONFIG, tmp_path) is not first  # finished: a new one


def test_work_runs_on_its_own_thread_one_per_key(tmp_path):
    runner = BackgroundRunner()
    release = threading.Event()
    threads: list[str] = []

    def work(report, stop):
        threads.append(threading.current_thread().name)
        report(0.25, "a quarter")
        report(7.0)  # clamped
        assert release.wait(30)
        return 42

    first = runner.start("compare", work)
    assert runner.start("compare", work) is first  # one per key at a time
    other = runner.start("export", work)
    assert other is not first
    wait_until(lambda: first.fraction == 1.0 and other.fraction == 1.0)
    assert first.text == "a quarter" and first.status == "running"
    release.set()
    wait_until(lambda: first.finished and other.finished)
    assert first.result == other.result == 42 and first.status == "completed"
    assert len(threads) == 2 and threading.main_thread().name not in threads
    assert runner.latest("compare") is first
    again = runner.start("compare", lambda report, stop: 43)  # the key is free again
    wait_until(lambda: again.finished)
    assert again is not first and again.result == 43 and runner.latest("compare") is again


def test_work_failures_and_stop():
    runner = BackgroundRunner()
    failed = runner.start("a", lambda report, stop: 1 / 0)
    user = runner.start("b", lambda report, stop: (_ for _ in ()).throw(InspectorError("No run selected.")))

    def until_stopped(report, stop):
        assert stop.wait(30)
        return "partial"

    stopped = runner.start("c", until_stopped)
    stopped.stop()
    wait_until(lambda: failed.finished and user.finished and stopped.finished)
    assert failed.status == "failed" and failed.error.startswith("ZeroDivisionError")
    assert user.status == "failed" and user.error == "No run selected."
    assert stopped.status == "stopped" and stopped.result == "partial"


def test_finished_handles_are_dropped_after_they_are_read():
    runner = BackgroundRunner()
    release = threading.Event()
    handle = runner.start("k", lambda report, stop: release.wait(30))
    assert runner.take(handle.id) is handle and runner.get(handle.id) is handle  # running: kept
    release.set()
    wait_until(lambda: handle.finished)
    assert runner.take(handle.id) is handle
    assert runner.get(handle.id) is None and runner.latest("k") is None and runner.handles() == []
    assert runner.take(handle.id) is None


def test_finished_handles_are_dropped_after_a_time_to_live():
    now = [1000.0]
    runner = BackgroundRunner(ttl_s=60, clock=lambda: now[0])
    release = threading.Event()
    old = runner.start("old", lambda report, stop: "old")
    running = runner.start("running", lambda report, stop: release.wait(30))
    wait_until(lambda: old.finished)
    now[0] += 59
    assert runner.get(old.id) is old
    now[0] += 2
    assert runner.get(old.id) is None and runner.latest("old") is None
    assert runner.get(running.id) is running  # unfinished handles never expire
    release.set()


def test_at_most_max_finished_are_kept():
    runner = BackgroundRunner(max_finished=3)
    handles = []
    for k in range(6):
        handles.append(runner.start(f"k{k}", lambda report, stop: None))
        wait_until(lambda: handles[-1].finished)
    assert [h.id for h in runner.handles()] == [h.id for h in handles[-3:]]


def test_a_finished_training_releases_its_data(tmp_path):
    trainer = FakeTrainer()
    trainer.release.set()
    handle = BackgroundRunner(trainer).submit_training(["big"], CONFIG, tmp_path)
    wait_until(lambda: handle.finished)
    assert handle._payload is None


def test_old_trainstart_without_run_dir_still_locates_the_run(tmp_path):
    def old_trainer(data, config, *, runs_dir, callbacks, stop_event):
        for callback in callbacks:
            callback(start_event("r1", None))
        return SimpleNamespace(status="completed")

    handle = BackgroundRunner(old_trainer).submit_training("data", CONFIG, tmp_path)
    wait_until(lambda: handle.finished)
    assert handle.run_dir == tmp_path / "r1"


def test_deprecated_names_still_work(tmp_path):
    trainer = FakeTrainer()
    trainer.release.set()
    manager = JobManager(trainer)
    job = manager.submit("data", CONFIG, tmp_path)
    wait_until(lambda: job.finished)
    assert manager.get(job.job_id) is job and manager.jobs() == [job] and manager.active() == []
    work = WorkRunner(manager.runner)
    handle = work.start("key", lambda report, stop: report(0.5) or "done")
    wait_until(lambda: handle.finished)
    assert work.get("key") is handle and handle.result == "done"
    assert {h.kind for h in manager.runner.handles()} == {"training", "work"}  # one registry


# -- TrainStart.run_dir ---------------------------------------------------------------------------
def test_trainstart_reads_old_lines_without_run_dir():
    line = start_event("r", "/runs/r").to_dict()
    assert event_from_dict(line).run_dir == "/runs/r"
    del line["run_dir"]
    assert event_from_dict(line).run_dir is None


def test_train_records_its_run_dir_in_trainstart(tiny_run):
    starts = [e for e in map(event_from_dict, Run(tiny_run.run_dir).events()) if isinstance(e, TrainStart)]
    assert len(starts) == 1 and Path(starts[0].run_dir) == Path(tiny_run.run_dir)


# -- MetricsTail ------------------------------------------------------------------------------------
def line(n: int) -> bytes:
    return (json.dumps({"event": "StepEnd", "run_id": "r", "time": 1.0, "phase": "train", "step": n, "steps": 9,
                        "epoch": 1, "lr": None, "images_per_s": 1.0, "elapsed_s": 1.0}) + "\n").encode()


def test_the_tail_reads_complete_lines_only_and_remembers_its_offset(tmp_path):
    tail = MetricsTail(tmp_path)
    assert tail.read() == [] and tail.offset == 0  # no metrics.jsonl yet (preparing)
    path = tmp_path / METRICS_FILE
    first, second = line(1), line(2)
    path.write_bytes(first + second[:10])  # the second line is still being written
    assert [e["step"] for e in tail.read_new()] == [1]
    assert tail.offset == len(first)
    assert tail.read_new() == [] and tail.offset == len(first)
    with open(path, "ab") as handle:
        handle.write(second[10:] + b"not json\n" + line(3))
    assert [e["step"] for e in tail.read_new()] == [2, 3]  # the broken line is skipped
    assert tail.offset == path.stat().st_size
    assert [e["step"] for e in tail.read()] == [1, 2, 3]


def test_the_tail_splits_no_character_and_parses_typed_events(tmp_path):
    path = tmp_path / METRICS_FILE
    text = (json.dumps({"event": "Unknown", "run_id": "r", "note": "défaut ✓"}, ensure_ascii=False) + "\n").encode()
    cut = text.index("✓".encode()) + 1  # in the middle of a multi-byte character
    path.write_bytes(line(1) + text[:cut])
    tail = MetricsTail(tmp_path, parse=event_from_dict)
    assert [type(e) for e in tail.read()] == [StepEnd]
    with open(path, "ab") as handle:
        handle.write(text[cut:] + line(2))
    events = tail.read()  # the unknown kind is dropped by the parser
    assert [e.step for e in events] == [1, 2] and all(isinstance(e, StepEnd) for e in events)


def test_the_tail_starts_over_when_the_file_is_replaced_or_truncated(tmp_path):
    path = tmp_path / METRICS_FILE
    path.write_bytes(line(1) + line(2))
    tail = MetricsTail(tmp_path)
    assert len(tail.read()) == 2
    path.write_bytes(line(7))  # truncated and rewritten
    assert [e["step"] for e in tail.read()] == [7]
    replacement = tmp_path / "new.jsonl"
    replacement.write_bytes(line(8) + line(9))
    replacement.replace(path)
    assert [e["step"] for e in tail.read()] == [8, 9]


def test_the_tail_is_safe_to_share_between_threads(tmp_path):
    path = tmp_path / METRICS_FILE
    path.write_bytes(b"")
    tail, results = MetricsTail(tmp_path), []
    stop = threading.Event()

    def writer() -> None:
        with open(path, "ab") as handle:
            for n in range(300):
                data = line(n)
                handle.write(data[:7])
                handle.flush()
                handle.write(data[7:])
                handle.flush()
        stop.set()

    def reader() -> None:
        while not stop.is_set():
            results.extend(e["step"] for e in tail.read_new())

    threads = [threading.Thread(target=writer), *[threading.Thread(target=reader) for _ in range(3)]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.extend(e["step"] for e in tail.read_new())
    assert sorted(results) == list(range(300))  # every line once, none split or repeated


@pytest.mark.slow
def test_the_runner_trains_the_verified_dataset_without_discovering_it_again(tiny_data, tmp_path, monkeypatch):
    import inspector.training as training
    from inspector.data import discover_dataset

    dataset = discover_dataset(tiny_data)

    def no_second_discovery(*args, **kwargs):
        raise AssertionError("the worker discovered the dataset again")

    monkeypatch.setattr(training, "discover_dataset", no_second_discovery)
    runner = BackgroundRunner(processes=False)  # in this process, where the patch applies
    handle = runner.submit_training(dataset, TrainConfig(strategy="linear_probe", image_size=64, seed=1,
                                                         max_folds=2, any_orientation=False), tmp_path / "runs")
    wait_until(lambda: handle.finished, timeout=300)
    assert handle.status == "completed", handle.error
    events = MetricsTail(handle.run_dir, parse=event_from_dict).read()
    assert isinstance(events[0], TrainStart) and Path(events[0].run_dir) == handle.run_dir
    assert handle.result.run_dir == handle.run_dir


@pytest.mark.slow
def test_two_real_trainings_race_in_worker_processes_sharing_the_cores(tiny_data, tmp_path):
    """The app's race: two trainings at once, each in a worker process of its own, both writing
    curves while the other runs; the threads are shared out and the results come home."""
    runner = BackgroundRunner(slots=2)  # the real train(), in spawned worker processes
    configs = [TrainConfig(strategy="fine_tune", epochs=2, image_size=64, batch_size=8, seed=seed, max_folds=2,
                           cross_validate=False, name=f"race {seed}") for seed in (1, 2)]
    handles = [runner.submit_training(tiny_data, config, tmp_path / "runs") for config in configs]
    wait_until(lambda: all(h.status == "running" for h in handles), timeout=60)
    assert [h.threads for h in handles] == [max(1, len(os.sched_getaffinity(0)) // 2)] * 2
    wait_until(lambda: all(h.finished for h in handles), timeout=600)
    assert [h.status for h in handles] == ["completed", "completed"], [h.error for h in handles]
    # Both were under way at the same time: each one's events began before the other's ended.
    spans = [(events[0].time, events[-1].time) for events in
             (MetricsTail(h.run_dir, parse=event_from_dict).read() for h in handles)]
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1], spans
    for handle in handles:
        events = MetricsTail(handle.run_dir, parse=event_from_dict).read()
        assert [e.epoch for e in events if isinstance(e, EpochEnd) and e.fold == "final"] == [1, 2]
        assert handle.result.run_dir == handle.run_dir and handle.fraction == 1.0
    assert handles[0].run_dir != handles[1].run_dir


def test_a_worker_process_that_dies_fails_its_handle_in_words(tmp_path):
    runner = BackgroundRunner(_die_at_once, slots=1, processes=True)
    handle = runner.submit_training("data", CONFIG, tmp_path)
    wait_until(lambda: handle.finished, timeout=120)
    assert handle.status == "failed" and "exit code 3" in handle.error and "out of memory" in handle.error


def test_data_that_cannot_reach_a_worker_process_fails_the_handle_and_frees_the_slot(tmp_path):
    runner = BackgroundRunner(_die_at_once, slots=1, processes=True)
    handle = runner.submit_training(lambda: None, CONFIG, tmp_path)  # a lambda cannot be pickled
    wait_until(lambda: handle.finished, timeout=60)
    assert handle.status == "failed" and "could not start its worker process" in handle.error
    assert runner._running == [] or all(h.finished for h in runner._running)


def test_a_worker_never_runs_the_parents_main_script_again(tmp_path, monkeypatch):
    """Under Streamlit `__main__` is the page being run: spawn would run it again in the worker."""
    import sys
    import types

    script = tmp_path / "page.py"
    script.write_text("raise SystemExit(7)  # a page that must not run in a worker\n")
    page = types.ModuleType("__main__")
    page.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", page)
    runner = BackgroundRunner(_return_status, slots=1, processes=True)
    handle = runner.submit_training("data", CONFIG, tmp_path)
    wait_until(lambda: handle.finished, timeout=120)
    assert handle.status == "completed", handle.error
    assert sys.modules["__main__"] is page  # put back


def _return_status(data, config, *, runs_dir, callbacks, stop_event):
    return SimpleNamespace(status="completed", run_dir=None, run_id=None)


def _die_at_once(data, config, *, runs_dir, callbacks, stop_event):
    os._exit(3)  # as the kernel's OOM killer would end it: no exception, no result
