"""Few-shot benchmark: each strategy trained on N images per class, tested on held-out images.

    python benchmarks/few_shot.py ../shared/datasets/magnetic-tile --shots 5 10 20 --seeds 3 \
        --strategies auto linear_probe fine_tune

Prints one table: strategy, shots, mean +- std accuracy on held-out images, train seconds,
training and inference images/s. The test set is up to --test-per-class held-out images per
class (balanced, so the 'Free' class of magnetic-tile does not dominate), the same for every
strategy at a given seed.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import numpy as np

from _common import few_shot_split, machine_header

from inspector import Predictor, TrainConfig, train
from inspector.data import discover_dataset
from inspector.engine.events import StepEnd
from inspector.engine.features import default_feature_cache


def run_one(dataset, train_idx, test_idx, strategy: str, seed: int, args) -> dict:
    rates = []

    def collect(event):  # the rate at the end of each feature-extraction or training pass
        if isinstance(event, StepEnd) and event.step == event.steps:
            rates.append(event.images_per_s)

    config = TrainConfig(backbone=args.backbone, strategy=strategy, seed=seed, image_size=args.image_size,
                         epochs=args.epochs, device=args.device, cross_validate=args.cv)
    default_feature_cache().clear()  # time-to-model from cold: no features left over from the previous row
    with tempfile.TemporaryDirectory() as runs:
        start = time.perf_counter()
        result = train(dataset.subset(train_idx), config, runs_dir=runs, callbacks=[collect])
        seconds = time.perf_counter() - start
        predictor = Predictor.from_run(result.run_dir, device=args.device)
        paths = [dataset.samples[i].path for i in test_idx]
        start = time.perf_counter()
        probs = predictor.predict_proba(paths, batch_size=32)
        infer_rate = len(paths) / (time.perf_counter() - start)
    truth = np.array([predictor.classes.index(dataset.samples[i].label) for i in test_idx])
    return {"accuracy": float((probs.argmax(1) == truth).mean()), "seconds": seconds,
            "train_rate": float(np.median(rates)) if rates else float("nan"), "infer_rate": infer_rate,
            "chosen": result.strategy, "cv": result.val_accuracy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data")
    parser.add_argument("--shots", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--strategies", nargs="+", default=["auto"])
    parser.add_argument("--test-per-class", type=int, default=50)
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cv", action=argparse.BooleanOptionalAction, default=True,
                        help="run the k-fold accuracy estimate inside each training, as the product does "
                             "(--no-cv: one fit; the held-out test images measure accuracy anyway)")
    args = parser.parse_args()

    dataset = discover_dataset(args.data)
    labels = np.asarray(dataset.labels)
    print(f"# {args.data}: {len(dataset)} images, {dataset.counts()}", file=sys.stderr)
    print(machine_header(device=args.device, backbone=args.backbone), file=sys.stderr)
    rows = []
    for shots in args.shots:
        for strategy in args.strategies:
            results = []
            for seed in range(args.seeds):
                train_idx, test_idx = few_shot_split(labels, shots, seed, args.test_per_class)
                r = run_one(dataset, train_idx, test_idx, strategy, seed, args)
                print(f"  {strategy} shots={shots} seed={seed}: acc {r['accuracy']:.3f} (cv {r['cv']}) "
                      f"{r['seconds']:.1f}s chosen={r['chosen']}", file=sys.stderr, flush=True)
                results.append(r)
            accs = [r["accuracy"] for r in results]
            rows.append([strategy, shots, f"{statistics.mean(accs):.3f} ± {statistics.pstdev(accs):.3f}",
                         f"{statistics.mean(r['seconds'] for r in results):.1f}",
                         f"{statistics.mean(r['train_rate'] for r in results):.0f}",
                         f"{statistics.mean(r['infer_rate'] for r in results):.0f}",
                         ",".join(sorted({r['chosen'] for r in results})), len(test_idx)])
    header = ["strategy", "shots/class", "accuracy (mean ± std)", "train s", "train img/s", "infer img/s",
              "ran", "test images"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(map(str, row)) + " |")


if __name__ == "__main__":
    main()
