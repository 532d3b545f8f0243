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
import sys
import time

import numpy as np

from _common import DATASETS, SAMPLE_DATA, few_shot_split, machine_header

from inspector.data import discover_dataset, stratified_holdout
from inspector.evidence.features import frozen_features, lda_predict

MAGNETIC_TILE = DATASETS / "magnetic-tile"
BACKBONES = ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2")


def log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def magnetic_splits(labels: np.ndarray, seeds: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(seed, 20-per-class training indices, test indices) per seed: the few-shot benchmark's splits."""
    return [(seed, *few_shot_split(labels, 20, seed)) for seed in range(seeds)]


def union_features(dataset, indices: np.ndarray, args, **kwargs) -> np.ndarray:
    """Features of all images (rows for `indices` only are computed; others are NaN)."""
    subset = sorted(set(map(int, indices)))
    fs = frozen_features(dataset.subset(subset), cache_dir=args.cache, device="cpu", **kwargs)
    full = np.full((len(dataset), fs.features.shape[1]), np.nan, dtype=np.float32)
    full[subset] = fs.features
    if fs.seconds:
        log(f"  features {kwargs} for {len(subset)} images: {fs.seconds:.0f} s")
    return full


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
        _, train_idx, test_idx = splits[0]  # the ranking uses seed 0's split only (CPU time)
        for backbone in BACKBONES:
            for size in args.sizes:
                union_features(mt, np.concatenate([train_idx, test_idx]), args, backbone=backbone, image_size=size,
                               symmetric=False)
                union_features(sd, np.arange(len(sd)), args, backbone=backbone, image_size=size, symmetric=False)


def table(header: list[str], rows: list[list]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(map(str, row)) + " |")
    sys.stdout.flush()


def stage_advisor(args) -> None:
    """Advisor on N per class predicts the held-out accuracy at 2N per class (magnetic-tile, 3 seeds)."""
    from inspector.evidence.learning_curve import advise_from_features

    mt = discover_dataset(MAGNETIC_TILE)
    labels = np.asarray(mt.labels)
    splits = magnetic_splits(labels, args.seeds)
    needed = np.concatenate([np.concatenate([tr, te]) for _, tr, te in splits])
    feats = union_features(mt, needed, args, symmetric=True)
    rows, summary = [], []
    for seed, _, test_idx in splits:
        measured = {}
        for shots in (5, 10, 20):
            train_idx, _ = stratified_holdout(labels, shots, seed=seed)  # nested: 5 in 10 in 20
            pred = lda_predict(feats[train_idx], labels[train_idx], feats[test_idx], len(mt.classes))
            measured[shots] = float((pred == labels[test_idx]).mean())
        summary.append([seed, *(f"{measured[s]:.3f}" for s in (5, 10, 20)), len(test_idx)])
        for shots, target in ((10, 20), (5, 10)):
            train_idx, _ = stratified_holdout(labels, shots, seed=seed)
            start = time.perf_counter()
            advice = advise_from_features(feats[train_idx], labels[train_idx], mt.classes, at=target, seed=seed,
                                          repeats=args.repeats)
            seconds = time.perf_counter() - start
            error = advice.predicted_accuracy - measured[target]
            low, high = advice.predicted_interval
            rows.append([seed, f"{shots} -> {target}", f"{advice.current_accuracy:.3f}",
                         f"{advice.predicted_accuracy:.3f}", f"{low:.3f}-{high:.3f}", f"{measured[target]:.3f}",
                         f"{100 * error:+.1f}", "yes" if abs(error) <= 0.05 else "**no**",
                         "yes" if low <= measured[target] <= high else "no", f"{seconds:.1f}"])
            log(f"  seed {seed} {shots}->{target}: predicted {advice.predicted_accuracy:.3f} "
                f"[{low:.3f}, {high:.3f}] measured {measured[target]:.3f}; a={advice.fit['a']:.3f} "
                f"b={advice.fit['b']:.3f} c={advice.fit['c']:.3f}; {seconds:.1f} s")
            for sentence in advice.sentences[:3]:
                log("    " + sentence)
    print("Measured held-out accuracy (LDA head on the linear probe's 8-view features, balanced test set):")
    table(["seed", "5 per class", "10 per class", "20 per class", "test images"], summary)
    print("\nAdvisor (cross-validated learning curve on the small set only, extrapolated):")
    table(["seed", "from -> to", "CV accuracy now", "predicted", "95% interval", "measured", "error (points)",
           "within 5 points", "measured inside interval", "advisor s"], rows)


def out_of_fold(feats: np.ndarray, labels: np.ndarray, n_classes: int, seed: int) -> np.ndarray:
    """Per-image correctness of a linear-probe run's stored validation predictions, at the feature level:
    the product's own cross-validation plan (inspector.data.plan_validation) for this seed, the LDA head
    fitted on each training fold, every image predicted once by the fold model that did not see it."""
    from inspector.data import plan_validation

    plan = plan_validation(labels, seed=seed, max_folds=5)
    correct = np.zeros(len(labels), dtype=bool)
    for train_idx, val_idx in plan.folds:
        correct[val_idx] = lda_predict(feats[train_idx], labels[train_idx], feats[val_idx], n_classes) == labels[val_idx]
    return correct


def stage_significance(args) -> None:
    """Same configuration, different seeds: no significant difference? A 64 px model: significantly worse?"""
    from threadpoolctl import threadpool_limits

    from inspector.evidence.paired import compare_correctness

    sd = discover_dataset(SAMPLE_DATA)
    labels = np.asarray(sd.labels)
    everything = np.arange(len(sd))
    normal = union_features(sd, everything, args, symmetric=True)
    crippled = union_features(sd, everything, args, symmetric=True, image_size=64)
    rows, verdicts = [], {"same": [], "crippled": []}
    with threadpool_limits(1):
        for r in range(args.repetitions):
            seed_a, seed_b = 2 * r, 2 * r + 1
            a = out_of_fold(normal, labels, len(sd.classes), seed_a)
            for name, b_feats in (("same", normal), ("crippled", crippled)):
                start = time.perf_counter()
                result = compare_correctness(a, out_of_fold(b_feats, labels, len(sd.classes), seed_b),
                                             name_a="A", name_b="B", seed=r)
                verdicts[name].append(result.verdict)
                rows.append([r, name, f"{result.accuracy_a:.3f}", f"{result.accuracy_b:.3f}",
                             f"{100 * result.difference:+.1f}", f"{result.p_value:.3g}", result.verdict,
                             f"{time.perf_counter() - start:.2f}"])
    table(["rep", "B is", "acc A", "acc B", "A-B points", "p", "verdict", "s"], rows)
    same, crip = verdicts["same"], verdicts["crippled"]
    print(f"\nsame configuration, seeds 2r vs 2r+1: no_significant_difference in "
          f"{same.count('no_significant_difference')}/{len(same)} repetitions")
    print(f"224 px (A) vs 64 px (B): a_better in {crip.count('a_better')}/{len(crip)} repetitions")


def stage_ranking(args) -> None:
    """LogME on the training images vs the linear probe's held-out accuracy, per backbone x input size."""
    from scipy.stats import spearmanr
    from threadpoolctl import threadpool_limits

    from inspector.evidence.transferability import logme

    mt, sd = discover_dataset(MAGNETIC_TILE), discover_dataset(SAMPLE_DATA)
    mt_labels, sd_labels = np.asarray(mt.labels), np.asarray(sd.labels)
    _, pool, test = magnetic_splits(mt_labels, 1)[0]
    rng = np.random.default_rng(0)
    draws = {"magnetic-tile": [], "sample_data": []}
    for _ in range(args.draws):  # 10 training images per class, the same draws for every backbone
        draws["magnetic-tile"].append((np.concatenate([rng.choice(pool[mt_labels[pool] == c], 10, replace=False)
                                                       for c in range(len(mt.classes))]), test))
        train = np.concatenate([rng.choice(np.flatnonzero(sd_labels == c), 10, replace=False)
                                for c in range(len(sd.classes))])
        draws["sample_data"].append((train, np.setdiff1d(np.arange(len(sd)), train)))
    rows, by_data = [], {}
    for name, dataset, labels, needed in (("magnetic-tile", mt, mt_labels, np.concatenate([pool, test])),
                                          ("sample_data", sd, sd_labels, np.arange(len(sd)))):
        for backbone in BACKBONES:
            for size in args.sizes:
                feats = union_features(dataset, needed, args, backbone=backbone, image_size=size, symmetric=False)
                scores, accs, seconds = [], [], []
                with threadpool_limits(1):
                    for train_idx, test_idx in draws[name]:
                        start = time.perf_counter()
                        scores.append(logme(feats[train_idx], labels[train_idx]))
                        seconds.append(time.perf_counter() - start)
                        pred = lda_predict(feats[train_idx], labels[train_idx], feats[test_idx], len(dataset.classes))
                        accs.append(float((pred == labels[test_idx]).mean()))
                row = [name, backbone, size, np.mean(scores), np.mean(accs), np.mean(seconds)]
                rows.append(row)
                by_data.setdefault(name, []).append(row)
    table(["data", "backbone", "input px", "LogME (mean of draws)", "held-out accuracy (mean)", "LogME s"],
          [[r[0], r[1], r[2], f"{r[3]:.4f}", f"{r[4]:.3f}", f"{r[5]:.3f}"] for r in rows])
    for name, part in by_data.items():
        rho = spearmanr([r[3] for r in part], [r[4] for r in part]).statistic
        print(f"Spearman (LogME vs accuracy), {name}, {len(part)} configurations: {rho:.2f}")
    rho = spearmanr([r[3] for r in rows], [r[4] for r in rows]).statistic
    print(f"Spearman, all {len(rows)} configurations pooled: {rho:.2f}")


def stage_timing(args) -> None:
    """Seconds per answer with features cached (10 images per class, 6 classes of magnetic-tile)."""
    from inspector.evidence.learning_curve import advise_from_features
    from inspector.evidence.paired import compare_correctness
    from inspector.evidence.transferability import logme

    mt = discover_dataset(MAGNETIC_TILE)
    labels = np.asarray(mt.labels)
    train_idx, _ = stratified_holdout(labels, 10, seed=0)
    start = time.perf_counter()
    fs = frozen_features(mt.subset(train_idx), cache_dir=args.cache, device="cpu", symmetric=True)
    load = time.perf_counter() - start
    start = time.perf_counter()
    advise_from_features(fs.features, fs.labels, fs.classes, at=20)  # first call: also imports scikit-learn
    t_first = time.perf_counter() - start
    start = time.perf_counter()
    advice = advise_from_features(fs.features, fs.labels, fs.classes, at=20, seed=1)
    t_advise = time.perf_counter() - start
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    compare_correctness(rng.random(300) < 0.8, rng.random(300) < 0.75)
    t_compare = time.perf_counter() - start
    start = time.perf_counter()
    logme(fs.features, fs.labels)
    t_logme = time.perf_counter() - start
    print(f"load cached features {load:.2f} s (first call: imports torch/timm); advise {t_first:.2f} s first call, "
          f"{t_advise:.2f} s next call; compare (300 images) {t_compare:.3f} s; "
          f"LogME per candidate {t_logme:.3f} s; load average now {os.getloadavg()[0]:.1f}")
    del advice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage", choices=["extract", "advisor", "significance", "ranking", "timing"])
    parser.add_argument("--cache", default="/tmp/inspector-evidence-features")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--what", nargs="+", default=["advisor", "ranking"])
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--repetitions", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--sizes", type=int, nargs="+", default=[192, 256])
    args = parser.parse_args()
    log(machine_header())
    globals()[f"stage_{args.stage}"](args)


if __name__ == "__main__":
    main()
