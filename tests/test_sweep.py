"""Issue 14: sweeps of ordinary trainings, on a local Ray cluster or one after the other."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from reliability_tools import SUBPROCESS_ENV, small_dataset

from inspector.config import TrainConfig
from inspector.errors import InspectorError
from inspector.runs import RunStore
from inspector.sweep import Trial, _best_first, plan_trials, run_sweep


def test_the_plan_is_every_combination_and_the_results_come_best_first():
    trials = plan_trials(["a", "b"], ["linear_probe"], [0, 1])
    assert trials == [Trial("a", "linear_probe", 0), Trial("a", "linear_probe", 1),
                      Trial("b", "linear_probe", 0), Trial("b", "linear_probe", 1)]
    rows = [{"status": "completed", "accuracy": 0.7}, {"status": "failed", "accuracy": None},
            {"status": "completed", "accuracy": 0.9}, {"status": "completed", "accuracy": None}]
    assert [r["accuracy"] for r in _best_first(rows)] == [0.9, 0.7, None, None]
    with pytest.raises(InspectorError):
        plan_trials([], ["linear_probe"], [0])


def test_without_ray_the_trials_race_on_the_background_runner_and_say_so(tmp_path):
    data = small_dataset(tmp_path / "data")
    base = TrainConfig(image_size=64, cross_validate=False)
    seen = []
    result = run_sweep(data, plan_trials(["tf_efficientnet_lite0", "no_such_backbone"], ["linear_probe"], [0]),
                       base, tmp_path / "runs", use_ray=False, parallel=2, on_trial=seen.append)
    assert result.engine == "local" and "raced on this machine, 2 at a time" in result.notes[0]
    assert len(seen) == 2
    best, failed = result.trials
    assert best["status"] == "completed" and best["backbone"] == "tf_efficientnet_lite0" and best["run_dir"]
    assert failed["status"] == "failed" and "no_such_backbone" in failed["error"]  # a bad trial does not end the sweep
    assert [i.status for i in RunStore(tmp_path / "runs").list_runs()] == ["completed"]


@pytest.mark.slow
def test_a_local_ray_cluster_runs_two_trials_into_the_run_store(tmp_path):
    data, runs = small_dataset(tmp_path / "data"), tmp_path / "runs"
    done = subprocess.run([sys.executable, "-m", "inspector", "sweep", str(data), "--backbones", "tf_efficientnet_lite0",
                           "--strategies", "linear_probe", "--seeds", "0,1", "--image-size", "64", "--no-cv",
                           "--runs-dir", str(runs), "--json"],
                          capture_output=True, text=True, env=SUBPROCESS_ENV, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["engine"] == "ray" and summary["n_completed"] == 2
    assert {t["seed"] for t in summary["trials"]} == {0, 1} and all(t["run_dir"] for t in summary["trials"])
    listed = subprocess.run([sys.executable, "-m", "inspector", "runs", "--runs-dir", str(runs), "--json"],
                            capture_output=True, text=True, env=SUBPROCESS_ENV, timeout=300)
    rows = json.loads(listed.stdout.strip().splitlines()[-1])["runs"]
    assert sorted(r["status"] for r in rows) == ["completed", "completed"]
    assert {r["run_dir"] for r in rows} == {t["run_dir"] for t in summary["trials"]}
