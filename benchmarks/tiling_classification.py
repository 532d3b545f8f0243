"""Which defect a strip holds (issue 22, item 5): a classifier on whole strips beside one on tiles.

    python benchmarks/tiling_classification.py --seeds 0 1 2 --per-class 12 [--settings whole tiles]

Strips of 8 magnetic-tile photos, each resized to 512 px high (aspect kept) and placed side by side
(about 4200 x 512 px): a `Free` strip holds 8 Free photos; a strip of a defect class holds 7 Free photos
and, at a random place, one photo of that class. No photo is in two strips. Each setting trains through
the CLI (`inspector train --json`, linear probe, 224 px input, views off: `--orientation-matters`), and
the figure is its out-of-fold accuracy (5-fold cross-validation on the strips), 6 classes, chance 1/6:

    whole   --defect-size 200   whole strips squeezed to 224 px (a 200 px defect already spans a cell)
    tiles   --defect-size 16    tiles of 448 px at x0.5, each tile's features averaged per strip
    default (no defect size)    tiles of 224 px at the camera's own resolution (the strips are large)

Data are read from ../shared/datasets beside the checkout; the strips are written under
/tmp/tiling_bench/cls_strips. The machine has 2 CPU cores shared with other work: times are indicative.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
from PIL import Image

from _common import DATASETS, machine_header, photo_strip

MT = DATASETS / "magnetic-tile"
CLASSES = ("Free", "Blowhole", "Break", "Crack", "Fray", "Uneven")
OUT = Path("/tmp/tiling_bench/cls_strips")
SETTINGS = {"whole": ["--defect-size", "200"], "tiles": ["--defect-size", "16"], "default": []}


def photos(name: str) -> list[Path]:
    return sorted(p for p in (MT / name).iterdir() if p.suffix.lower() in (".jpg", ".png"))


def build(seed: int, per_class: int) -> Path:
    """The seed's strips, one folder per class; prints what was built."""
    rng = np.random.default_rng(seed)
    root = OUT / f"seed{seed}_n{per_class}"
    free = [photos("Free")[i] for i in rng.permutation(len(photos("Free")))]
    k, widths = 0, []
    for name in CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
        bad = [photos(name)[i] for i in rng.permutation(len(photos(name)))] if name != "Free" else []
        if bad and len(bad) < per_class:
            raise SystemExit(f"{name} has {len(bad)} photos, fewer than --per-class {per_class}")
        for j in range(per_class):
            chosen = free[k:k + 8] if name == "Free" else free[k:k + 7]
            k += len(chosen)
            if bad:
                at = int(rng.integers(8))
                chosen = chosen[:at] + [bad[j]] + chosen[at:]
            image = photo_strip(chosen)
            widths.append(image.shape[1])
            Image.fromarray(image).save(root / name / f"{name}_{j:03d}.png")
    print(json.dumps({"seed": seed, "strips": len(widths), "per_class": per_class, "height_px": 512,
                      "width_px": [min(widths), int(np.median(widths)), max(widths)], "free_photos_used": k}),
          flush=True)
    return root


def train(root: Path, setting: str, seed: int) -> dict:
    runs = OUT / "runs"
    cmd = ["inspector", "train", str(root), "--strategy", "linear_probe", "--orientation-matters", "--seed", str(seed),
           "--runs-dir", str(runs), "--json", *SETTINGS[setting]]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    summary = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1])
    metrics = summary.get("metrics", summary)
    return {"seed": seed, "setting": setting, "val_accuracy": metrics.get("val_accuracy"),
            "val_macro_f1": metrics.get("val_macro_f1"), "inputs": metrics.get("inputs"),
            "tile_px": metrics.get("tile_px"), "wall_s": round(time.perf_counter() - t0, 1),
            "load": round(os.getloadavg()[0], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--per-class", type=int, default=12)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    print(machine_header(), flush=True)
    results = []
    for seed in args.seeds:
        root = build(seed, args.per_class)
        for setting in args.settings:
            results.append(train(root, setting, seed))
            print(json.dumps(results[-1]), flush=True)
    for setting in args.settings:
        acc = [r["val_accuracy"] for r in results if r["setting"] == setting]
        print(json.dumps({"setting": setting, "mean_val_accuracy": round(float(np.mean(acc)), 3),
                          "per_seed": acc}), flush=True)


if __name__ == "__main__":
    main()
