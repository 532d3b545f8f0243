"""The familiarity guard of anomaly runs (issue 22, item 4): trained on 16 good images, how often it
flags new good images (target <= 2 %), how often defect images, and how often another product's photos
(target >= 95 % caught).

Two detectors per seed (the product's PatchDetector at the CLI's anomaly settings, 256 px, whole
images), each fitted as a run fits it (`out_of_sample_scores(fit=True)`: the bank, the threshold's
scores and the guard from the same features):
- magnetic-tile: 16 `Free` photos; then 50 other Free, 10 of each defect class, 50 textile-sim nominal;
- textile-sim: 16 nominal; then 50 other nominal, 25 local and 25 global flaws, 50 magnetic-tile Free.
A photo is flagged when its distance from the good images' features is beyond the guard's limit (the
predictor then answers UNSURE, "unlike the training images").

With --cache DIR the features are kept (one .npz per seed and product: the 16 good images' features as
the detector handed them to `fit_guard`, its feature blocks, and the scored photos' embeddings); a later
run with the same DIR refits only the guard on them (`fit_guard`, as the detector calls it), so limit
rules can be compared without embedding a photo again.

Run: python benchmarks/familiarity_anomaly.py [--seeds 3] [--cache DIR]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _common import DATASETS, machine_header, read_images

from inspector.runtime.familiarity import fit_guard

DEFECTS = ("Blowhole", "Break", "Crack", "Fray", "Uneven")
KINDS = ("good", "defect", "other product")


def pick(folder: Path, n: int, rng: np.random.Generator) -> list[Path]:
    paths = sorted(folder.iterdir())
    rng.shuffle(paths)
    return paths[:n]


def embed(train: list[Path], scored: dict[str, list[Path]], seed: int) -> dict[str, np.ndarray]:
    """The detector fitted as a run fits it: the features its guard was fitted on, its blocks, the limit
    it got, and the scored photos' embeddings (per kind)."""
    import inspector.tasks.anomaly.detector as detector_module
    from inspector.runtime.familiarity import read_guard
    from inspector.tasks.anomaly.detector import DetectorConfig, PatchDetector

    seen: dict[str, np.ndarray] = {}
    product_fit = detector_module.fit_guard

    def recording(features, blocks=None, **kwargs):
        seen["train"] = np.asarray(features, dtype=np.float64)
        seen["blocks"] = np.asarray(blocks if blocks else [seen["train"].shape[1]], dtype=np.int64)
        return product_fit(features, blocks, **kwargs)

    detector_module.fit_guard = recording
    try:
        detector = PatchDetector(DetectorConfig(image_size=256, seed=seed))
        detector.out_of_sample_scores(read_images(train), fit=True, seed=seed)
    finally:
        detector_module.fit_guard = product_fit
    seen["limit"] = np.array(read_guard(detector.familiarity_).limit)
    for kind, paths in scored.items():
        seen[kind] = np.asarray(detector.score_all(read_images(paths)).embeddings(), dtype=np.float64)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=None, help="keep / reuse the features here")
    args = parser.parse_args()
    print(machine_header(seeds=args.seeds))
    totals: dict[tuple[str, str], list[int]] = {}
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        free = pick(DATASETS / "magnetic-tile" / "Free", 66, rng)
        defects = [p for c in DEFECTS for p in pick(DATASETS / "magnetic-tile" / c, 10, rng)]
        nominal = pick(DATASETS / "textile-sim" / "nominal", 66, rng)
        flaws = pick(DATASETS / "textile-sim" / "local", 25, rng) + pick(DATASETS / "textile-sim" / "global", 25, rng)
        for name, train, good, defect, foreign in (("magnetic-tile", free[:16], free[16:], defects, nominal[16:]),
                                                   ("textile-sim", nominal[:16], nominal[16:], flaws, free[16:])):
            cached = args.cache / f"seed{seed}_{name}.npz" if args.cache else None
            if cached is not None and cached.exists():
                with np.load(cached) as stored:
                    seen = dict(stored)
            else:
                seen = embed(train, dict(zip(KINDS, (good, defect, foreign))), seed)
                if cached is not None:
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    np.savez(cached, **seen)
            guard = fit_guard(seen["train"], [int(b) for b in seen["blocks"]], seed=seed)  # as the detector does
            line = [f"seed {seed} {name}: limit {guard.limit:.2f}"]
            for kind in KINDS:
                flagged = int(guard.beyond(seen[kind]).sum())
                totals.setdefault((name, kind), [0, 0])
                totals[(name, kind)][0] += flagged
                totals[(name, kind)][1] += len(seen[kind])
                line.append(f"{kind} flagged {flagged}/{len(seen[kind])}")
            print(", ".join(line), flush=True)
    for (name, kind), (flagged, n) in totals.items():
        print(f"total {name} {kind}: {flagged}/{n} flagged ({flagged / n:.1%})")


if __name__ == "__main__":
    main()
