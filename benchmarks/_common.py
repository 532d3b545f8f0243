"""What the benchmarks share: the machine header, the data and its splits, and AUROC from the library.

The benchmarks run as scripts (`python benchmarks/X.py`), so `import _common` finds this file
beside them; importing it also puts the checkout first on sys.path, so the figures measure this
checkout's `inspector`. Nothing here imports torch at import time.
"""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from inspector.data import load_image, stratified_holdout, to_rgb_array  # noqa: E402
from inspector.evaluation import auroc  # noqa: E402, F401 - the library's AUROC: benchmarks measure the product's code

DATASETS = REPO.parent / "shared" / "datasets"  # beside the checkout, read in place, never copied
SAMPLE_DATA = REPO / "sample_data" / "train"


def machine_header(**settings) -> str:
    """The line a benchmark prints before its figures: CPU, cores, load, torch and its threads.

    The machine is shared, so figures move with the load: the load average at the start goes with
    them. Keyword settings (device, backbone, ...) follow as `name value`.
    """
    import torch  # here, not at the top: a benchmark may set its thread count before torch loads

    parts = [platform.processor() or platform.machine(), f"{os.cpu_count()} logical CPUs",
             f"load {os.getloadavg()[0]:.1f} at start", f"torch {torch.__version__} with {torch.get_num_threads()} threads",
             f"python {platform.python_version()}"]
    parts += [f"{name.replace('_', ' ')} {value}" for name, value in settings.items()]
    return "# machine: " + ", ".join(parts)


def few_shot_split(labels: np.ndarray, shots: int, seed: int, test_per_class: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """The few-shot protocol (docs/BENCHMARKS.md): (training indices, test indices).

    `shots` training images per class from the library's stratified_holdout (nested: a seed's 10
    are among its 20); the test set is up to `test_per_class` of the other images per class,
    balanced so that a large class (magnetic-tile's 'Free') does not dominate, and the same for
    every strategy at a given seed.
    """
    train_idx, rest = stratified_holdout(labels, shots, seed=seed)
    rng = np.random.default_rng(seed + 1000)
    test = []
    for c in np.unique(labels):
        pool = rest[labels[rest] == c]
        test.extend(rng.choice(pool, min(test_per_class, len(pool)), replace=False))
    return train_idx, np.array(sorted(test))


_IMAGES: dict[Path, np.ndarray] = {}


def read_images(paths: list[Path]) -> list[np.ndarray]:
    """RGB arrays of `paths`, each decoded once per process (the benchmarks revisit the same images)."""
    for p in paths:
        if p not in _IMAGES:
            _IMAGES[p] = to_rgb_array(load_image(p))
    return [_IMAGES[p] for p in paths]


def split_sample_data(root: Path, n_train: int = 16) -> tuple[Path, Path]:
    """The sample data copied into root/train and root/test: per class, the first `n_train` images
    (by name) train and the others test, the same split every time."""
    from inspector.sample_data import split_by_name

    return split_by_name(SAMPLE_DATA, root, n_train)


def held_out_accuracy(run_dir: str | Path, folder: Path) -> float:
    """Accuracy of a trained run on a folder of class sub-folders it never saw."""
    from inspector import Predictor
    from inspector.data import discover_dataset

    dataset = discover_dataset(folder)
    predictor = Predictor.from_run(run_dir)
    probs = predictor.predict_proba([s.path for s in dataset.samples])
    truth = np.array([predictor.classes.index(s.label) for s in dataset.samples])
    return float((probs.argmax(1) == truth).mean())


def photo_strip(paths: list[Path], height: int = 512) -> np.ndarray:
    """A large grey image made of real photos: each resized to `height` px high (aspect kept) and placed
    side by side, (height, sum of widths) uint8 (the issue-22 strips of tiling.py and tiling_classification.py)."""
    from PIL import Image

    parts = []
    for p in paths:
        im = Image.open(p).convert("L")
        parts.append(np.asarray(im.resize((round(im.width * height / im.height), height), Image.BILINEAR)))
    return np.concatenate(parts, axis=1)
