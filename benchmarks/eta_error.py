"""ETA error (issue 20): how far the live "time left" is from the truth at 25 % and 50 % of a run.

    python benchmarks/eta_error.py [--epochs 3]

Trains on the sample data (inspector.sample_data: 5 classes x 24 images) a linear probe, a fine_tune
of --epochs epochs and an anomaly run (its good class only learns; the defect classes validate),
records (wall time, eta_s) of every Progress event, and prints for each run the ETA's relative error
at 25 % and 50 % of its real wall time: (eta - true remaining) / true remaining, with the event last
emitted before that moment. Positive: the ETA said more time than was left. Target: within +-50 %
at 25 %. The machine is shared, so load shifts the figures: the header gives the load at the start.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import SAMPLE_DATA, machine_header

from inspector import TrainConfig, train
from inspector.engine.events import Progress, TrainStart


def eta_trace(config: TrainConfig, runs_dir: Path) -> tuple[list[tuple[float, float | None]], float, float]:
    """(seconds since train() was called, eta_s) per Progress event, the run's wall seconds, and when
    the run's first event (TrainStart) came (the time before it: choosing, building the model)."""
    trace, first = [], []
    started = time.perf_counter()

    def record(event) -> None:
        now = time.perf_counter() - started
        if isinstance(event, TrainStart):
            first.append(now)
        if isinstance(event, Progress):
            trace.append((now, event.eta_s))

    train(SAMPLE_DATA, config, runs_dir=runs_dir, callbacks=[record])
    return trace, time.perf_counter() - started, first[0] if first else 0.0


def error_at(trace: list[tuple[float, float | None]], wall: float, share: float) -> tuple[float, float, float]:
    """(relative error, eta_s, true remaining) of the last event before share x wall."""
    moment = share * wall
    t, eta = [(t, eta) for t, eta in trace if t <= moment and eta is not None][-1]
    remaining = wall - t
    return (eta - remaining) / remaining, eta, remaining


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    print(machine_header(device="cpu", backbone="tf_efficientnet_lite0", data="sample_data/train (120 images)"))
    runs = {"linear_probe": TrainConfig(strategy="linear_probe", device="cpu"),
            f"fine_tune {args.epochs} epochs": TrainConfig(strategy="fine_tune", epochs=args.epochs, device="cpu"),
            "anomaly": TrainConfig(task="anomaly", ok_classes=("ok",), device="cpu")}
    print("| run | wall s | events | first ETA s (at s) | ETA error at 25 % | at 50 % |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, config in runs.items():
            trace, wall, _ = eta_trace(config, Path(tmp))
            cells = []
            for share in (0.25, 0.5):
                error, eta, remaining = error_at(trace, wall, share)
                cells.append(f"{error:+.0%} (ETA {eta:.0f} s, {remaining:.0f} s left)")
            first_t, first_eta = trace[0]
            print(f"| {name} | {wall:.0f} | {len(trace)} | {first_eta:.0f} ({first_t:.1f}) | {cells[0]} | {cells[1]} |",
                  flush=True)


if __name__ == "__main__":
    main()
