"""Issue 13: benchmarks/inference.py runs end to end and prints every figure it promises
(small sizes here; the real figures are in docs/BENCHMARKS.md)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_tools import SUBPROCESS_ENV

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "inference.py"


@pytest.mark.slow
def test_the_inference_benchmark_measures_reference_predictor_bundle_and_service(tiny_run):
    done = subprocess.run([sys.executable, str(BENCHMARK), str(tiny_run.run_dir), "--images", "6", "--batch-size", "3",
                           "--requests", "4", "--clients", "2"],
                          capture_output=True, text=True, env=SUBPROCESS_ENV, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    table = {m.group(1).strip(): float(m.group(2)) for m in re.finditer(r"^\| ([^|]+) \| ([\d.]+) \| [\d.]+ \|", done.stdout, re.M)}
    for row in ("plain timm eager forward (reference, model only)", "PyTorch Predictor as shipped",
                "exported bundle (onnx), model only", "exported bundle, predict.py path (numpy resize + model)"):
        assert table.get(row, 0) > 0, (row, done.stdout[-2000:])
    assert re.search(r"export: [\d.]+ s ONNX conversion", done.stdout)
    assert re.search(r"first call \(session \+ 1 image\): [\d.]+ s", done.stdout)
    for runtime in ("PyTorch predictor", "exported bundle"):
        latencies = re.search(rf"^\| {runtime}[^|]* \| 1 sequential \| 4 \| (\d+) \| (\d+) \|", done.stdout, re.M)
        assert latencies and 0 < int(latencies.group(1)) <= int(latencies.group(2)), (runtime, done.stdout[-1500:])
