"""Soak: many short trainings and predictions in one long-lived process, as the web app runs them.

    python benchmarks/soak.py --minutes 10               # the figures in docs/RELIABILITY.md
    python benchmarks/soak.py --minutes 5 --same-seed    # the same without new cached features
    python benchmarks/soak.py --seconds 30 --cycles 3 --json   # what tests/test_reliability_soak.py runs

Each cycle trains a linear probe through the BackgroundRunner (the app's background worker) with a new
seed, loads the run as a Predictor, predicts a few new parts, draws one heatmap and lists the
runs. After two warm-up cycles it prints the process's memory (RSS), open file descriptors and
threads; growth that does not level off is a leak. A new seed means new augmented views, so the
frozen-feature cache grows every cycle (--same-seed: it stops growing after the first). With
--json the last line is one JSON object.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil

WARM_UP_CYCLES = 2


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--seconds", type=float, default=None, help="how long to soak after the warm-up")
    length.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--cycles", type=int, default=1,
                        help="soak at least this many cycles after the warm-up, however long they take (a slow "
                             "or busy machine still gets a fair sample)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--images-per-class", type=int, default=6)
    parser.add_argument("--same-seed", action="store_true", help="train every cycle with seed 0")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and BLAS threads (default 1: on shared cores more threads spin-wait)")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args()


def sample(process: psutil.Process) -> dict[str, float]:
    gc.collect()
    return {"rss_mb": round(process.memory_info().rss / 2**20, 1), "fds": process.num_fds(),
            "threads": process.num_threads()}


def make_cycle(work: Path, image_size: int, images_per_class: int):
    """A function running one train + predict cycle; returns the number of images predicted."""
    from inspector import BackgroundRunner, Predictor, RunStore, TrainConfig
    from inspector.sample_data import generate_sample_data

    data = generate_sample_data(work / "data", seed=3, images_per_class=images_per_class, new_parts=4)
    new_parts = sorted((data / "new_parts").iterdir())
    runner, runs = BackgroundRunner(), work / "runs"

    def cycle(seed: int) -> int:
        config = TrainConfig(strategy="linear_probe", image_size=image_size, seed=seed, max_folds=2)
        job = runner.submit_training(str(data / "train"), config, runs)
        while not job.finished:
            time.sleep(0.05)
        if job.status != "completed":
            raise SystemExit(f"training {seed} ended {job.status}: {job.error}")
        predictor = Predictor.from_run(job.run_dir)
        predictor.predict_batch(new_parts)
        predictor.heatmap(new_parts[0])
        RunStore(runs).list_runs()
        return len(new_parts)

    return cycle


def soak(seconds: float, image_size: int, images_per_class: int, same_seed: bool, cycles: int = 1) -> dict:
    from inspector.engine.features import default_feature_cache

    process = psutil.Process()
    with tempfile.TemporaryDirectory(prefix="inspector-soak-") as tmp:
        cycle = make_cycle(Path(tmp), image_size, images_per_class)
        for n in range(WARM_UP_CYCLES):
            cycle(0 if same_seed else n)
        start, first = time.monotonic(), sample(process)
        rows, predicted, n = [], 0, WARM_UP_CYCLES
        print(f"{'cycle':>5} {'seconds':>8} {'rss MB':>8} {'fds':>5} {'threads':>7}", file=sys.stderr)
        while time.monotonic() - start < seconds or n < WARM_UP_CYCLES + max(1, cycles):
            predicted += cycle(0 if same_seed else n)
            rows.append({"cycle": n, "seconds": round(time.monotonic() - start, 1), **sample(process)})
            print(f"{n:5d} {rows[-1]['seconds']:8.1f} {rows[-1]['rss_mb']:8.1f} {rows[-1]['fds']:5d} "
                  f"{rows[-1]['threads']:7d}", file=sys.stderr, flush=True)
            n += 1
        last = sample(process)
    cache = default_feature_cache()
    return {"trainings": n, "warm_up_trainings": WARM_UP_CYCLES, "predictions": predicted,
            "seconds": round(time.monotonic() - start, 1), "start": first, "end": last,
            "rss_mb_peak": max(r["rss_mb"] for r in rows),
            "rss_mb_growth_second_half": round(rows[-1]["rss_mb"] - rows[len(rows) // 2]["rss_mb"], 1),
            "feature_cache_items": len(cache),
            "feature_cache_mb": round(cache.nbytes / 2**20, 1)}


def main() -> None:
    args = parse_args()
    seconds = args.seconds if args.seconds is not None else 60 * (args.minutes if args.minutes is not None else 2)
    if args.threads > 0:  # before numpy and torch load their thread pools
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(args.threads)
    result = soak(seconds, args.image_size, args.images_per_class, args.same_seed, args.cycles)
    start, end = result["start"], result["end"]
    print(f"{result['trainings']} trainings ({result['warm_up_trainings']} warm-up), {result['predictions']} "
          f"predictions in {result['seconds']} s after warm-up; RSS {start['rss_mb']} -> {end['rss_mb']} MB "
          f"(peak {result['rss_mb_peak']}), fds {start['fds']} -> {end['fds']}, threads {start['threads']} -> "
          f"{end['threads']}; feature cache {result['feature_cache_items']} items, {result['feature_cache_mb']} MB",
          file=sys.stderr)
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
