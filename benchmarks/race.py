"""Racing two trainings against running them one after the other: the wall time of both.

    python benchmarks/race.py [--data sample_data/train] [--epochs 3] [--image-size 128]

Two fine-tunes (tf_efficientnet_lite0 and lite1, the same settings) go through the app's
BackgroundRunner twice: with one slot (one after the other) and with two (a race, each in a
worker process with half the cores). Prints each run's own training time and the wall time of both.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import SAMPLE_DATA, machine_header

from inspector.config import TrainConfig
from inspector.jobs import BackgroundRunner

BACKBONES = ("tf_efficientnet_lite0", "tf_efficientnet_lite1")


def both(data: Path, slots: int, epochs: int, image_size: int, runs_dir: Path) -> tuple[float, list[float], list[str]]:
    runner = BackgroundRunner(slots=slots)
    started = time.perf_counter()
    handles = [runner.submit_training(str(data), TrainConfig(backbone=b, strategy="fine_tune", epochs=epochs,
                                                             image_size=image_size, cross_validate=False, seed=0,
                                                             augment="none"), runs_dir)
               for b in BACKBONES]
    while not all(h.finished for h in handles):
        time.sleep(0.2)
    wall = time.perf_counter() - started
    return wall, [h.result.train_seconds if h.result else float("nan") for h in handles], [h.status for h in handles]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SAMPLE_DATA)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=128)
    args = parser.parse_args()
    print(machine_header(epochs=args.epochs, image_size=args.image_size, data=args.data))
    print("| mode | wall time of both (s) | lite0 train s | lite1 train s | statuses |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for slots, mode in ((1, "one after the other (1 slot)"), (2, "race (2 slots, half the cores each)")):
            wall, seconds, statuses = both(args.data, slots, args.epochs, args.image_size, Path(tmp) / str(slots))
            print(f"| {mode} | {wall:.1f} | {seconds[0]:.1f} | {seconds[1]:.1f} | {', '.join(statuses)} |", flush=True)


if __name__ == "__main__":
    main()
