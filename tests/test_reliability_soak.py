"""Issue 5, under load: many short trainings and predictions in one process (benchmarks/soak.py,
bounded in time) must not grow memory without bound, and must give back files and threads."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_tools import SUBPROCESS_ENV

SOAK = Path(__file__).resolve().parents[1] / "benchmarks" / "soak.py"


@pytest.mark.slow
def test_soak_memory_files_and_threads_stay_bounded():
    # At least 3 cycles after the warm-up whatever the machine's speed: the test is about what stays
    # bounded, not about how many trainings fit in 30 s (4 did on an idle 2-core machine, 5 were asked).
    out = subprocess.run([sys.executable, str(SOAK), "--seconds", "30", "--cycles", "3", "--images-per-class", "4",
                          "--json"],
                         check=False, capture_output=True, text=True, timeout=300, env=SUBPROCESS_ENV)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    start, end = result["start"], result["end"]
    assert result["trainings"] - result["warm_up_trainings"] >= 3 and result["predictions"] >= 12
    assert end["rss_mb"] - start["rss_mb"] < 300, result  # generous: allocator slack and caches, not a leak
    assert end["fds"] <= start["fds"] + 2, result  # run files, model files and images are all closed
    # Trainings run in worker processes that end with them: no thread is left behind per job.
    assert end["threads"] <= start["threads"] + 2, result
