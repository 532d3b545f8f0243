"""Scaling out on this machine (issue 14): DDP against one process, and a sweep's overhead.

    python benchmarks/scaling.py ddp   --epochs 5 --image-size 160
    python benchmarks/scaling.py sweep --seeds 0,1

ddp: fine-tunes on the sample data (16 images per class for training, the other 8 for testing)
once as 1 process x 2 threads and once as `torchrun --nproc-per-node 2` x 1 thread, same global
batch and seed. Prints images/s and seconds per epoch (from the runs' EpochEnd events) and the
test accuracy of both models.
sweep: `inspector sweep` of 1 backbone x linear_probe x the seeds; prints its wall time against
the sum of its trials' train times.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import SAMPLE_DATA, held_out_accuracy, machine_header, split_sample_data

from inspector.runs import Run

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def _train(command: list[str], threads: int) -> tuple[dict, float]:
    env = {**ENV, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"training failed: {done.stderr[-2000:]}")
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1]), wall


def run_ddp(args) -> None:
    work = Path(tempfile.mkdtemp(prefix="scaling-"))
    train, test = split_sample_data(work / "data")
    common = ["train", str(train), "--strategy", "fine_tune", "--epochs", str(args.epochs), "--image-size",
              str(args.image_size), "--batch-size", str(args.batch_size), "--no-cv", "--seed", "0", "--json",
              "--runs-dir", str(work / "runs")]
    setups = {
        "1 process x 2 threads": ([sys.executable, "-m", "inspector", *common], 2),
        "2 processes x 1 thread (torchrun, gloo)": ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                     "--nproc-per-node", "2", "-m", "inspector", *common], 1),
    }
    for name, (command, threads) in setups.items():
        result, wall = _train(command, threads)
        epochs = [e for e in Run(result["run_dir"]).events() if e["event"] == "EpochEnd"]
        times = np.diff([0.0] + [e["elapsed_s"] for e in epochs])
        row = {"setup": name, "epochs": len(epochs), "images_per_s": float(np.median([e["images_per_s"] for e in epochs])),
               "seconds_per_epoch": float(np.median(times[1:] if len(times) > 1 else times)),
               "train_seconds": result["train_seconds"], "wall_seconds": round(wall, 1),
               "test_accuracy": held_out_accuracy(result["run_dir"], test), "load1": os.getloadavg()[0]}
        print(json.dumps(row), flush=True)


def run_sweep(args) -> None:
    work = Path(tempfile.mkdtemp(prefix="sweep-"))
    command = [sys.executable, "-m", "inspector", "sweep", str(SAMPLE_DATA), "--backbones",
               "tf_efficientnet_lite0", "--strategies", "linear_probe", "--seeds", args.seeds, "--no-cv",
               "--runs-dir", str(work / "runs"), "--json"]
    summary, wall = _train(command, 1)
    print(json.dumps({"engine": summary["engine"], "trials": summary["n_trials"], "completed": summary["n_completed"],
                      "sweep_wall_seconds": summary["wall_seconds"], "command_wall_seconds": round(wall, 1),
                      "sum_train_seconds": summary["sum_train_seconds"],
                      "trial_train_seconds": [t["train_seconds"] for t in summary["trials"]],
                      "load1": os.getloadavg()[0]}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=["ddp", "sweep"])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seeds", default="0,1")
    args = parser.parse_args()
    print(machine_header(), flush=True)
    {"ddp": run_ddp, "sweep": run_sweep}[args.part](args)


if __name__ == "__main__":
    main()
