"""Benchmarks of the evidence tools (issue 15): advisor, paired significance test, backbone ranking.

    python benchmarks/evidence.py extract            # frozen features into the cache (slow, once)
    python benchmarks/evidence.py advisor            # learning-curve extrapolation vs measured accuracy
    python benchmarks/evidence.py significance       # same-config seeds vs a crippled model
    python benchmarks/evidence.py ranking            # LogME vs measured linear-probe accuracy
    python benchmarks/evidence.py timing             # seconds per answer with features cached

Features are computed once into --cache (default /tmp/inspector-evidence-features) through
inspector.evidence.features, i.e. the linear probe's own features; every later stage reads them.
Protocol for magnetic-tile (as benchmarks/few_shot.py and docs/BENCHMARKS.md): for each seed, N
training images per class from inspector.data.stratified_holdout (the 10 are a subset of the 20 for
the same seed); the test set is up to 50 other images per class, balanced, never used in training.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from inspector.data import discover_dataset, stratified_holdout  # noqa: E402
from inspector.evidence.features import frozen_features, lda_predict  # noqa: E402

SHARED = REPO.parent / "shared" / "datasets"
MAGNETIC_TILE = SHARED / "magnetic-tile"
SAMPLE_DATA = REPO / "sample_data" / "train"
BACKBONES = ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2")


def log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def balanced_test(labels: np.ndarray, candidates: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """The few-shot benchmark's test set (same draw as benchmarks/few_shot.py)."""
    rng = np.random.default_rng(seed + 1000)
    chosen = []
    for c in np.unique(labels):
        pool = candidates[labels[candidates] == c]
        chosen.extend(rng.choice(pool, min(per_class, len(pool)), replace=False))
    return np.array(sorted(chosen))


def magnetic_splits(labels: np.ndarray, seeds: int, shots: int = 20, test_per_class: int = 50):
    """(seed, 20-per-class training indices, test indices) per seed."""
    out = []
    for seed in range(seeds):
        train_idx, rest = stratified_holdout(labels, shots, seed=seed)
        out.append((seed, train_idx, balanced_test(labels, rest, test_per_class, seed)))
    return out


def union_features(dataset, indices: np.ndarray, args, **kwargs) -> np.ndarray:
    """Features of all images (rows for `indices` only are computed; others are NaN)."""
    subset = sorted(set(map(int, indices)))
    fs = frozen_features(dataset.subset(subset), cache_dir=args.cache, device="cpu", **kwargs)
    full = np.full((len(dataset), fs.features.shape[1]), np.nan, dtype=np.float32)
    full[subset] = fs.features
    if fs.seconds:
        log(f"  features {kwargs} for {len(subset)} images: {fs.seconds:.0f} s")
    return full


def machine() -> str:
    import torch

    return (f"{platform.machine()}, {os.cpu_count()} cores shared with other engineers (load average "
            f"{os.getloadavg()[0]:.1f} at start), torch {torch.__version__} with {torch.get_num_threads()} threads")


def stage_extract(args) -> None:
    mt = discover_dataset(MAGNETIC_TILE)
    labels = np.asarray(mt.labels)
    splits = magnetic_splits(labels, args.seeds)
    needed = np.concatenate([np.concatenate([tr, te]) for _, tr, te in splits])
    log(f"magnetic-tile: {len(set(needed.tolist()))} images for {args.seeds} seeds")
    if "advisor" in args.what:
        union_features(mt, needed, args, symmetric=True)
    if "ranking" in args.what:
        sd = discover_dataset(SAMPLE_DATA)
        for backbone in BACKBONES:
            for size in args.sizes:
                union_features(mt, needed, args, backbone=backbone, image_size=size, symmetric=False)
                union_features(sd, np.arange(len(sd)), args, backbone=backbone, image_size=size, symmetric=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage", choices=["extract", "advisor", "significance", "ranking", "timing"])
    parser.add_argument("--cache", default="/tmp/inspector-evidence-features")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--what", nargs="+", default=["advisor", "ranking"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[160, 288])
    args = parser.parse_args()
    log(f"# {machine()}")
    globals()[f"stage_{args.stage}"](args)


if __name__ == "__main__":
    main()
