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

With --cache DIR each run's guard inputs are kept (one .npz per seed and model: the features the run
handed to `fit_guard`, their blocks, and every held-out image's distance from its row); a later run with
the same DIR trains nothing: it refits the guard on those features (`fit_guard`, as the run calls it:
the same model of the features, so the same distances; only the limit rule may differ) and counts a
held-out image as flagged when its distance is beyond the refitted limit. --only NAME trains only the
models named (e.g. --only textile-sim: the one run of 48 images, below the quantile's 49).

Run: python benchmarks/foreign_images.py [--seeds 1] [--per-class 16] [--held-out 20] [--cache DIR] [--only NAME]
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


def flagged(predictor, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """(flagged, distance) of each image's row."""
    from inspector.tasks.base import PredictOptions, create_task

    rows = create_task("classification").result_rows(predictor, read_images(paths), PredictOptions())
    return (np.array([row["verdict"] == "UNSURE" and (row["reason"] or "").startswith(UNFAMILIAR) for row in rows]),
            np.array([row["familiarity"]["distance"] for row in rows]))


def trained(training: list[tuple[Path, str]], splits: dict, seed: int) -> tuple[dict[str, np.ndarray], dict]:
    """A run trained by the product: (its guard's inputs and limit, {product: (flagged, distances)})."""
    import inspector.tasks.classification.familiarity as familiarity_module
    from inspector import Predictor, TrainConfig, train

    seen: dict[str, np.ndarray] = {}
    product_fit = familiarity_module.fit_guard

    def recording(features, blocks=None, **kwargs):
        seen["train"] = np.asarray(features, dtype=np.float64)
        seen["blocks"] = np.asarray(blocks if blocks else [seen["train"].shape[1]], dtype=np.int64)
        seen["guard_seed"] = np.array(kwargs.get("seed", 0))
        return product_fit(features, blocks, **kwargs)

    familiarity_module.fit_guard = recording
    try:
        with tempfile.TemporaryDirectory() as runs:
            result = train(training, TrainConfig(strategy="linear_probe", seed=seed, max_folds=3), runs_dir=runs)
            predictor = Predictor.from_run(result.run_dir)
            seen["limit"] = np.array(predictor.familiarity.limit)
            outcomes = {other: flagged(predictor, held_out) for other, (_, held_out) in splits.items()}
    finally:
        familiarity_module.fit_guard = product_fit
    return seen, outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--per-class", type=int, default=16)
    parser.add_argument("--held-out", type=int, default=20)
    parser.add_argument("--cache", type=Path, default=None, help="keep / reuse the guards' inputs here")
    parser.add_argument("--only", action="append", default=None, help="train only this model (repeatable)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from inspector.runtime.familiarity import fit_guard

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
            if args.only and name not in args.only:
                continue
            started = time.perf_counter()
            cached = args.cache / f"seed{seed}_{name.replace(' ', '_')}.npz" if args.cache else None
            if cached is not None and cached.exists():
                with np.load(cached) as stored:
                    seen = dict(stored)
                guard = fit_guard(seen["train"], [int(b) for b in seen["blocks"]], seed=int(seen["guard_seed"]))
                limit = guard.limit
                outcomes = {other: (seen[f"distances {other}"] > limit, seen[f"distances {other}"]) for other in splits}
            else:
                seen, outcomes = trained(training, splits, seed)
                limit = float(seen["limit"])
                if cached is not None:
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    np.savez(cached, **seen, **{f"distances {other}": d for other, (_, d) in outcomes.items()})
            cells = []
            for other, (hits, _) in outcomes.items():
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
