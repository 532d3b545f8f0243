"""Frozen features for the evidence tools: the linear probe's own features, and its head.

The features are exactly the ones the default linear probe trains on: the multiscale GeM-pooled,
power-normalised features of a frozen timm backbone (inspector/models.py), optionally averaged
over the 8 flips and quarter turns, fed through the backbone's own preprocessing without
augmentation. They go through the project's feature extraction, so its in-memory cache is shared
with training; an optional folder keeps them between processes (one .npz per backbone setting,
keyed by image content hash, loaded without pickle), so a second `inspector advise` on the same
images skips the backbone entirely.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InspectorError
from ..tasks.classification.linear import fit_lda

DEFAULT_BACKBONE = "tf_efficientnet_lite0"
DEFAULT_SIZES_FILE = "default_sizes.json"  # backbone -> its default input size, beside the cache
_MODELS: dict[tuple, object] = {}
_MODELS_LOCK = threading.Lock()


@dataclass
class FeatureSet:
    """Features of every image of a dataset, in the dataset's sample order."""

    features: np.ndarray  # (n_images, n_features) float32
    labels: np.ndarray  # class index per image
    classes: list[str]
    paths: list[str]
    backbone: str
    image_size: int
    symmetric: bool
    seconds: float  # wall-clock time to get them (0 when all came from a cache)

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def feature_key(backbone: str, image_size: int, resize_mode: str, symmetric: bool, bit_depth: int | None = None) -> str:
    """What the features depend on (also the cache key); `bit_depth`: the dataset's 16-bit camera depth."""
    bits = f"|bits={bit_depth}" if bit_depth is not None else ""  # 8-bit datasets keep their cached features
    return f"evidence|{backbone}|{image_size}px|{resize_mode}|multiscale|symmetric={symmetric}|power_norm=True{bits}"


def _model(backbone: str, symmetric: bool, device):
    """A frozen multiscale model, built once per process and setting (read-only afterwards)."""
    from ..engine.device import prepare_model
    from ..models import build_model

    key = (backbone, symmetric, str(device))
    with _MODELS_LOCK:
        if key not in _MODELS:
            try:
                model = build_model(backbone, 2, "multiscale", symmetric=symmetric, power_norm=True)
            except InspectorError:
                raise
            except Exception as exc:  # noqa: BLE001 - weights missing, unknown name: one plain line
                raise InspectorError(f"The backbone {backbone} cannot be loaded: {exc}") from exc
            _MODELS[key] = prepare_model(model.eval(), device)
        return _MODELS[key]


def _cache_file(cache_dir: Path, key: str) -> Path:
    return cache_dir / f"{hashlib.sha1(key.encode()).hexdigest()[:20]}.npz"


def _load_cache(path: Path, key: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return {}
            return dict(zip(data["hashes"].tolist(), data["features"]))
    except (OSError, KeyError, ValueError):
        return {}  # missing or damaged: recomputed


def _save_cache(path: Path, key: str, table: dict[str, np.ndarray]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            np.savez(handle, key=np.array(key), hashes=np.array(list(table)),
                     features=np.stack(list(table.values())).astype(np.float32))
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs time


def frozen_features(dataset, backbone: str = DEFAULT_BACKBONE, image_size: int | None = None, *,
                    symmetric: bool = True, resize_mode: str = "stretch", device: str = "auto",
                    batch_size: int = 32, cache_dir: str | os.PathLike | None = None,
                    on_batch: Callable[[int, int, float], None] | None = None) -> FeatureSet:
    """The linear probe's frozen features of every image in `dataset` (a LabeledDataset).

    Args:
        image_size: input size in pixels (default: the backbone's own).
        symmetric: average over the 8 flips and quarter turns, as training does unless the
            orientation matters (8x the compute).
        cache_dir: a folder that keeps features between processes (None: in memory only).
    """
    prep = None
    start = time.perf_counter()
    hashes = [s.sha256 for s in dataset.samples]
    cache = Path(cache_dir) if cache_dir is not None else None
    # A full cache hit needs no torch: the backbone's default size is remembered beside the cache,
    # so a repeated `inspector advise` answers without importing the deep-learning stack.
    size = image_size or (_remembered_size(cache, backbone) if cache is not None else None)
    table: dict[str, np.ndarray] = {}
    bit_depth = dataset.bit_depth  # the whole dataset's, also for the subset still to compute
    if size is not None and cache is not None:
        key = feature_key(backbone, size, resize_mode, symmetric, bit_depth)
        table = _load_cache(_cache_file(cache, key), key)
    missing = [i for i, h in enumerate(hashes) if h not in table]
    if missing:
        from ..augment import build_transform, resolve_preprocessing
        from ..engine.device import resolve_device
        from ..engine.features import extract_features
        from ..engine.loaders import load_image_set

        prep = resolve_preprocessing(backbone, image_size, resize_mode)
        size = prep.image_size
        key = feature_key(backbone, size, resize_mode, symmetric, bit_depth)
        if cache is not None:
            table = _load_cache(_cache_file(cache, key), key)
            missing = [i for i, h in enumerate(hashes) if h not in table]
            if image_size is None:
                _remember_size(cache, backbone, size)
    if missing:
        torch_device = resolve_device(device)
        model = _model(backbone, symmetric, torch_device)
        images = load_image_set(dataset.subset(missing), size, bit_depth)
        computed = np.asarray(extract_features(model, images, build_transform(prep, "none"), model_key=key,
                                               device=torch_device, batch_size=batch_size, on_batch=on_batch),
                              dtype=np.float32)
        table.update(zip((hashes[i] for i in missing), computed))
        if cache is not None:
            _save_cache(_cache_file(cache, key), key, table)
    features = np.stack([table[h] for h in hashes]).astype(np.float32) if hashes else np.zeros((0, 0), np.float32)
    return FeatureSet(features, np.asarray(dataset.labels, dtype=np.int64), list(dataset.classes),
                      [str(s.path) for s in dataset.samples], backbone, int(size), symmetric,
                      time.perf_counter() - start if missing else 0.0)


def _remembered_size(cache: Path, backbone: str) -> int | None:
    try:
        value = json.loads((cache / DEFAULT_SIZES_FILE).read_text(encoding="utf-8")).get(backbone)
        return int(value) if value else None
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def _remember_size(cache: Path, backbone: str, size: int) -> None:
    try:
        sizes = json.loads((cache / DEFAULT_SIZES_FILE).read_text(encoding="utf-8"))
        sizes = sizes if isinstance(sizes, dict) else {}
    except (OSError, ValueError):
        sizes = {}
    sizes[backbone] = int(size)
    try:
        tmp = cache / f".{DEFAULT_SIZES_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(sizes), encoding="utf-8")
        os.replace(tmp, cache / DEFAULT_SIZES_FILE)
    except OSError:
        pass


def lda_fit(features: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The linear probe's shrinkage LDA (tasks/classification/linear.py), weights and biases: with the
    Ledoit-Wolf shrinkage from the Gram matrix it takes about 0.01 s per fit, so a cross-validated
    learning curve (over 100 fits) is an answer in seconds. A class without rows gets a NaN bias."""
    return fit_lda(np.asarray(features, dtype=np.float64), np.asarray(labels), n_classes)


def lda_predict(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, n_classes: int) -> np.ndarray:
    """Class predictions of the linear probe's head trained on `train_x`.

    Only the argmax matters here, and the head's softmax temperature (found by its own 10-fold
    search in fit_linear_head) divides every logit by the same positive number, so the plain LDA
    fit predicts the same classes.
    """
    weight, bias = lda_fit(train_x, train_y, n_classes)
    bias = np.nan_to_num(bias, nan=-np.inf)
    return np.argmax(np.asarray(test_x, dtype=np.float64) @ weight.T + bias, axis=1)
