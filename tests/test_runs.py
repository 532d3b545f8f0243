"""The run store: atomic, listable, survives dead processes, never unpickles."""
from __future__ import annotations

import json
import os
import pickle
import time

import pytest

from inspector.errors import InspectorError
from inspector.inference import Predictor
from inspector import runs as runs_module
from inspector.runs import RunStore, clean_name


def test_create_list_rename_delete(tmp_path):
    store = RunStore(tmp_path)
    run = store.create({"backbone": "x"}, backbone="tf_efficientnet_lite0", strategy="linear_probe", name="first")
    assert [r.run_id for r in store.list_runs()] == [run.run_id]
    store.rename(run.run_id, "  better name\x00 ")
    assert store.list_runs()[0].name == "better name"
    run.update(status="completed")
    store.delete(run.run_id)
    assert store.list_runs() == []
    assert list(tmp_path.iterdir()) == []


def test_a_running_run_whose_process_died_shows_as_interrupted(tmp_path):
    run = RunStore(tmp_path).create({}, backbone="b", strategy="s")
    assert run.info().status == "running"  # this process owns it and is alive
    record = run.record()
    record["owner"]["pid"] = 999_999_999  # no such process
    (run.path / "run.json").write_text(json.dumps(record))
    assert RunStore(tmp_path).list_runs()[0].status == "interrupted"


def test_a_run_owned_by_another_host_is_judged_by_its_heartbeat(tmp_path):
    """A Ray worker or torchrun node on another machine writes to the shared folder: its process id
    means nothing here, so the run is alive while it keeps writing and interrupted once it is silent."""
    run = RunStore(tmp_path).create({}, backbone="b", strategy="s")
    record = run.record()
    record["owner"].update(host="another-machine", pid=1)  # pid 1 exists here; it must not count
    (run.path / "run.json").write_text(json.dumps(record))
    run.append_event({"event": "StepEnd", "step": 1})
    assert run.info().status == "running"
    silent_since = time.time() - runs_module.HEARTBEAT_TIMEOUT_S - 5
    for name in ("run.json", "metrics.jsonl"):
        os.utime(run.path / name, (silent_since, silent_since))
    assert run.info().status == "interrupted"
    run.append_event({"event": "StepEnd", "step": 2})  # it speaks again: alive again
    assert run.info().status == "running"


def test_a_half_written_metrics_line_is_ignored(tmp_path):
    run = RunStore(tmp_path).create({}, backbone="b", strategy="s")
    run.append_event({"event": "EpochEnd", "epoch": 1})
    with open(run.path / "metrics.jsonl", "a") as handle:
        handle.write('{"event": "EpochEnd", "ep')  # the process was killed mid-write
    assert run.events() == [{"event": "EpochEnd", "epoch": 1}]


def test_folders_that_are_not_runs_are_left_out_and_refused(tmp_path):
    (tmp_path / "holiday-photos").mkdir()
    (tmp_path / ".hidden").mkdir()
    assert RunStore(tmp_path).list_runs() == []
    with pytest.raises(InspectorError, match="not a training run"):
        Predictor.from_run(tmp_path / "holiday-photos")
    with pytest.raises(InspectorError, match="not a valid run id"):
        RunStore(tmp_path).get("../etc")


def test_run_names_are_display_text_not_paths():
    assert clean_name("../../etc/passwd") == "../../etc/passwd"  # stored in JSON only, never a path
    assert clean_name("\x00\n") == "unnamed"
    assert len(clean_name("x" * 500)) == 80


class _Exploit:
    """Unpickling this creates the marker file: proof that code from the file ran."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_planted_pickle_in_a_run_folder_is_never_loaded(tiny_run, tmp_path):
    import shutil

    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(marker))
    pickle.loads(payload)  # the payload is live: loading it with pickle does create the marker
    assert marker.exists()
    marker.unlink()

    run_dir = tmp_path / tiny_run.run_id
    shutil.copytree(tiny_run.run_dir, run_dir)
    for name in ("model.pt", "model.pkl", "model.pth", "checkpoint.ckpt"):
        (run_dir / name).write_bytes(payload)
    predictor = Predictor.from_run(run_dir)  # reads model.safetensors + model.json only
    assert predictor.classes == ["crack", "ok", "scratch"]
    assert not marker.exists()
    (run_dir / "model.safetensors").write_bytes(payload)
    with pytest.raises(InspectorError, match="cannot be loaded"):
        Predictor.from_run(run_dir)
    assert not marker.exists()
