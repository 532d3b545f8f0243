"""Images unlike the training images (issue 22, item 4): how often the familiarity guard wrongly flags
training-like images, and how often it catches another product's photos.

Three classification runs, trained by the product (`inspector.train`, linear probe: lite0, 224 px, 8
symmetric views, the guard fitted as every run fits it):
- magnetic-tile: 16 images of each of its 6 classes;
- textile-sim: 16 images of each of its 3 folders (nominal, local, global) as classes;
- the sample data: 16 images of each of its 5 classes.
Each run then predicts (the product's result rows, as `inspector predict`) its own held-out images
(training-like: up to 20 more of each class; the sample data's 8 others per class and its 10 new parts)
and the other products' held-out images. A row counts as flagged when its verdict is UNSURE with the
reason "unlike the training images". Per seed the training images are drawn anew.

Run: python benchmarks/foreign_images.py [--seeds 1] [--per-class 16] [--held-out 20]
"""
from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _common import DATASETS, SAMPLE_DATA, REPO, machine_header, read_images

from inspector.runtime.rows import UNFAMILIAR


def folders(root: Path, classes: list[str] | None = None) -> dict[str, list[Path]]:
    return {d.name: sorted(p for p in d.iterdir() if p.is_file())
            for d in sorted(root.iterdir()) if d.is_dir() and (classes is None or d.name in classes)}


def draw(pools: dict[str, list[Path]], per_class: int, held_out: int, seed: int
         ) -> tuple[list[tuple[Path, str]], list[Path]]:
    """(training (path, class) pairs, held-out paths): per class `per_class` to train, up to `held_out` others."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label, paths in pools.items():
        order = rng.permutation(len(paths))
        train += [(paths[i], label) for i in order[:per_class]]
        test += [paths[i] for i in order[per_class:per_class + held_out]]
    return train, test


def flagged(predictor, paths: list[Path]) -> np.ndarray:
    from inspector.tasks.base import PredictOptions, create_task

    rows = create_task("classification").result_rows(predictor, read_images(paths), PredictOptions())
    return np.array([row["verdict"] == "UNSURE" and (row["reason"] or "").startswith(UNFAMILIAR) for row in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--per-class", type=int, default=16)
    parser.add_argument("--held-out", type=int, default=20)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from inspector import Predictor, TrainConfig, train

    print(machine_header(backbone="tf_efficientnet_lite0", strategy="linear_probe", image_size=224))
    products = {"magnetic-tile": folders(DATASETS / "magnetic-tile"), "textile-sim": folders(DATASETS / "textile-sim"),
                "sample data": folders(SAMPLE_DATA)}
    new_parts = sorted((REPO / "sample_data" / "new_parts").iterdir())
    print("| seed | model trained on | training images | limit | training-like flagged | "
          + " | ".join(f"{name} caught" for name in products) + " | seconds |")
    print("|---|---|---|---|---|" + "---|" * len(products) + "---|")
    totals: dict[tuple[str, str], list[int]] = {}
    for seed in range(args.seeds):
        splits = {name: draw(pools, args.per_class, args.held_out, seed) for name, pools in products.items()}
        splits["sample data"][1].extend(new_parts)
        for name, (training, own) in splits.items():
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as runs:
                result = train(training, TrainConfig(strategy="linear_probe", seed=seed, max_folds=3), runs_dir=runs)
                predictor = Predictor.from_run(result.run_dir)
                limit = predictor.familiarity.limit
                cells = []
                for other, (_, held_out) in splits.items():
                    hits = flagged(predictor, held_out)
                    key = (name, "training-like" if other == name else other)
                    totals.setdefault(key, [0, 0])
                    totals[key][0] += int(hits.sum())
                    totals[key][1] += len(hits)
                    cells.append(f"{hits.sum()}/{len(hits)} ({hits.mean():.1%})")
            own_cell = cells[list(splits).index(name)]
            others = [c if other != name else "-" for c, other in zip(cells, splits)]
            print(f"| {seed} | {name} | {len(training)} | {limit:.2f} | {own_cell} | " + " | ".join(others)
                  + f" | {time.perf_counter() - started:.0f} |", flush=True)
    print("\nAll seeds:")
    for (name, what), (hits, n) in totals.items():
        verb = "wrongly flagged" if what == "training-like" else "caught"
        print(f"- {name} model, {what} images {verb}: {hits}/{n} ({hits / n:.1%})")


if __name__ == "__main__":
    main()
