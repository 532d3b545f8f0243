"""Issue 5, nothing lost: kill -9 during training, a crash in the middle of an upload, a full disk
and a read-only workspace. Runs stay readable, earlier runs stay intact, no half-written file
is ever visible, and the user gets one clear error."""
from __future__ import annotations

import builtins
import errno
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from image_factories import image_bytes, noise_image
from reliability_tools import (
    CLI,
    SUBPROCESS_ENV,
    digest,
    single_threaded,
    small_dataset,
)

from inspector import runs as runs_module
from inspector.cli import main
from inspector.data import discover_dataset, load_image
from inspector.errors import InspectorError
from inspector.inference import Predictor
from inspector.runs import Run, RunStore
from inspector.workspace import Workspace

KILL_SEED = 20240605
# Where each kill lands: a random delay after the moment named (the run folder appearing, or
# the n-th checkpoint written), so kills hit before and after the first checkpoint.
KILL_MOMENTS = (("run folder", 0), ("checkpoint", 1), ("checkpoint", 2))


def png(seed: int) -> bytes:
    return image_bytes(noise_image(seed), "PNG")


# -- kill -9 during training ---------------------------------------------------------------------
def _new_run(runs: Path, known: set[str]) -> Path | None:
    fresh = [p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in known] \
        if runs.is_dir() else []
    return fresh[0] if fresh else None


def _checkpoints(run_dir: Path | None) -> int:
    if run_dir is None:
        return 0
    return sum(e.get("event") == "CheckpointSaved" for e in Run(run_dir).events())


def _train_until(moment: tuple[str, int], data: Path, runs: Path, log: Path) -> tuple[subprocess.Popen, Path]:
    """Start `inspector train` and return once the moment is reached (the process still running)."""
    known = {p.name for p in runs.iterdir()} if runs.is_dir() else set()
    with log.open("w") as stderr:
        # 30 epochs: on a quiet machine 4 epochs of this tiny run end in about 1.3 s, inside the kill's
        # random delay (up to 1 s), so the run could complete before the kill it is meant to survive.
        proc = subprocess.Popen([*CLI, "train", str(data), "--strategy", "fine_tune", "--epochs", "30",
                                 "--image-size", "64", "--max-folds", "2", "--runs-dir", str(runs)],
                                stdout=subprocess.DEVNULL, stderr=stderr, env=SUBPROCESS_ENV)
    kind, n = moment
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        run_dir = _new_run(runs, known)
        if run_dir is not None and (kind == "run folder" or _checkpoints(run_dir) >= n):
            return proc, run_dir
        assert proc.poll() is None, f"training ended before the kill: {log.read_text()[-2000:]}"
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"training did not reach {moment} in time: {log.read_text()[-2000:]}")


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_nothing(tiny_run, tiny_data, tmp_path, capsys):
    runs = tmp_path / "runs"
    earlier = shutil.copytree(tiny_run.run_dir, runs / tiny_run.run_id)  # a completed run already there
    earlier_files = digest(earlier)
    data = small_dataset(tmp_path / "data")
    rng = random.Random(KILL_SEED)
    killed: list[Path] = []
    for k, moment in enumerate(KILL_MOMENTS, start=1):
        proc, run_dir = _train_until(moment, data, runs, tmp_path / f"train{k}.log")
        time.sleep(rng.uniform(0.0, 1.0))
        assert proc.poll() is None, "the training finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        killed.append(run_dir)
        with capsys.disabled():  # the figures docs/RELIABILITY.md quotes
            print(f"\nkill {k} after {moment}: {len(Run(run_dir).events())} events, "
                  f"checkpoints {_checkpoints(run_dir)}, model file {(run_dir / 'model.safetensors').is_file()}")

    infos = {info.run_id: info for info in RunStore(runs).list_runs()}  # readable, nothing raises
    assert set(infos) == {earlier.name, *(p.name for p in killed)}
    assert infos[earlier.name].status == "completed" and digest(earlier) == earlier_files
    image = min((tiny_data / "ok").iterdir())
    assert Predictor.from_run(earlier).predict(image).label in ("crack", "ok", "scratch")

    with_model = 0
    for run_dir in killed:
        assert infos[run_dir.name].status == "interrupted"
        if _checkpoints(run_dir):  # a checkpoint announced is a checkpoint on disk
            assert infos[run_dir.name].has_model
        if not infos[run_dir.name].has_model:  # killed before its first checkpoint: a plain message
            with pytest.raises(InspectorError, match="no trained model yet"):
                Predictor.from_run(run_dir)
            continue
        with_model += 1
        prediction = Predictor.from_run(run_dir).predict(data / "ok" / "ok0.png")
        assert prediction.label in ("nok", "ok")
        assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert with_model >= 2  # the kills after a checkpoint left a loadable model

    assert main(["runs", "--runs-dir", str(runs), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["runs"]
    assert sorted(r["status"] for r in listed) == ["completed", "interrupted", "interrupted", "interrupted"]


# -- a crash in the middle of an upload ------------------------------------------------------------
def _half_then(error: BaseException):
    """A Path.write_bytes that writes half of the data, then fails like a crash or a full disk."""
    def write_bytes(self: pathlib.Path, data: bytes) -> int:
        with open(self, "wb") as handle:
            handle.write(bytes(data)[: len(data) // 2])
        raise error
    return write_bytes


def test_a_crash_in_the_middle_of_an_upload_leaves_no_half_image(tmp_path, monkeypatch):
    ws = Workspace(tmp_path / "ws")
    ws.add_images("ok", [("a.png", png(1))])
    monkeypatch.setattr(pathlib.Path, "write_bytes", _half_then(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        ws.add_images("ok", [("b.png", png(2))])
    assert sorted(p.name for p in (ws.data_dir / "ok").iterdir()) == ["a.png"]  # no b.png, no temp file


_UPLOADER = """
import pathlib, sys, time
from inspector.workspace import Workspace

def slow_write(self, data):  # half the bytes, then the power goes
    with open(self, "wb") as handle:
        handle.write(data[: len(data) // 2])
        handle.flush()
    print("half written", flush=True)
    time.sleep(600)

ws = Workspace(sys.argv[1])
pathlib.Path.write_bytes = slow_write
ws.add_images("ok", [("new.png", pathlib.Path(sys.argv[2]).read_bytes())])
"""


def test_kill_9_in_the_middle_of_an_upload_leaves_no_half_image(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.add_images("ok", [("a.png", png(1)), ("b.png", png(2))])
    (tmp_path / "new.png").write_bytes(png(3))
    proc = subprocess.Popen([sys.executable, "-c", _UPLOADER, str(ws.root), str(tmp_path / "new.png")],
                            stdout=subprocess.PIPE, text=True, env=SUBPROCESS_ENV)
    assert proc.stdout.readline().strip() == "half written"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    leftovers = [p.name for p in (ws.data_dir / "ok").iterdir() if p.name.startswith(".")]
    assert len(leftovers) == 1  # the half-written temporary file, hidden...
    assert [p.name for p in ws.images("ok")] == ["a.png", "b.png"]  # ...and never shown as an image
    dataset = discover_dataset(ws.data_dir)
    assert len(dataset) == 2 and dataset.skipped == []
    assert all(load_image(p).mode == "RGB" for p in ws.images("ok"))


# -- full disk, read-only workspace ---------------------------------------------------------------
def _enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_during_an_upload_is_a_clear_error_and_nothing_half_written(tmp_path, monkeypatch):
    ws = Workspace(tmp_path / "ws")
    ws.add_images("ok", [("a.png", png(1))])
    before = digest(ws.data_dir / "ok")
    monkeypatch.setattr(pathlib.Path, "write_bytes", _half_then(_enospc()))
    with pytest.raises(InspectorError, match="the disk is full"):
        ws.add_images("ok", [("a.png", png(2)), ("b.png", png(3))])
    assert digest(ws.data_dir / "ok") == before  # the old image untouched, no new or temporary file


def _read_only(*_args, **_kwargs):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS))


def test_read_only_workspace_gives_a_clear_error(tmp_path, monkeypatch):
    ws = Workspace(tmp_path / "ws")
    ws.add_images("ok", [("a.png", png(1))])
    store = RunStore(ws.runs_dir)
    before = digest(ws.data_dir / "ok")
    monkeypatch.setattr(tempfile, "mkstemp", _read_only)
    monkeypatch.setattr(pathlib.Path, "mkdir", _read_only)
    monkeypatch.setattr(os, "replace", _read_only)
    for action in (lambda: ws.add_images("ok", [("b.png", png(2))]), lambda: ws.create_class("dent"),
                   lambda: ws.rename_class("ok", "good"), lambda: ws.delete_class("ok"),
                   lambda: store.create({}, backbone="b", strategy="s")):
        with pytest.raises(InspectorError, match="read-only"):
            action()
    assert digest(ws.data_dir / "ok") == before and not ws.runs_dir.exists()


def test_full_disk_in_the_run_store_keeps_the_previous_files(tiny_run, tmp_path, monkeypatch):
    run = Run(shutil.copytree(tiny_run.run_dir, tmp_path / tiny_run.run_id))
    before, n_events = digest(run.path), len(run.events())
    state = Predictor.from_run(run.path).model.state_dict()
    monkeypatch.setattr(pathlib.Path, "write_bytes", _half_then(_enospc()))
    monkeypatch.setattr(pathlib.Path, "write_text", lambda self, text, **kw: _half_then(_enospc())(self, text.encode()))

    def full_append(path, mode="r", *args, **kwargs):  # appending to metrics.jsonl: half a line, then full
        with builtins.open(path, mode, *args, **kwargs) as handle:
            handle.write('{"event": "EpochEnd", "ep')
        raise _enospc()

    monkeypatch.setattr(runs_module, "open", full_append, raising=False)
    for action in (lambda: run.update(status="completed", name="renamed"),
                   lambda: run.save_model(state, {"classes": ["x"]}),
                   lambda: run.save_evaluation({"accuracy": 0.0}),
                   lambda: run.append_event({"event": "EpochEnd", "epoch": 99})):
        with pytest.raises(InspectorError, match="the disk is full"):
            action()
    monkeypatch.undo()
    after = digest(run.path)
    assert {k: v for k, v in after.items() if k != "metrics.jsonl"} == \
        {k: v for k, v in before.items() if k != "metrics.jsonl"}
    assert len(run.events()) == n_events  # the half-written line is ignored
    assert Predictor.from_run(run.path).classes == ["crack", "ok", "scratch"]


def test_full_disk_while_training_is_one_error_line_in_the_cli(tmp_path, monkeypatch, capsys):
    data = small_dataset(tmp_path / "data")
    real = pathlib.Path.write_bytes

    def no_room_for_weights(self: pathlib.Path, payload: bytes) -> int:
        if "model.safetensors" in self.name:
            return _half_then(_enospc())(self, payload)
        return real(self, payload)

    monkeypatch.setattr(pathlib.Path, "write_bytes", no_room_for_weights)
    with single_threaded():
        code = main(["train", str(data), "--strategy", "linear_probe", "--image-size", "64", "--max-folds", "2",
                     "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: Cannot write") and "the disk is full" in err[-1]
    assert "Traceback" not in "\n".join(err)
    (info,) = RunStore(tmp_path / "runs").list_runs()
    assert info.status == "failed" and not info.has_model
    assert not [p for p in info.path.iterdir() if p.name.endswith(".tmp")]
