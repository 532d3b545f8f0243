"""Frozen-backbone features, computed once per image and kept in a bounded, locked cache.

The cache is shared across folds and runs of one process (the app trains many models on the same
images), so it is bounded in bytes, not rows, and locked: the job worker writes while a page reads.
Pass your own `FeatureCache` to keep results apart; `default_feature_cache()` is the process's.
"""
from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Hashable

import numpy as np
import torch

from ..augment import inputs_of
from ..models import pooled_features
from ..runtime.tiling import mean_over_inputs
from .device import autocast, to_device
from .distributed import SINGLE, Ranks
from .loaders import ImageSet
from .progress import NO_PROGRESS

DEFAULT_CACHE_BYTES = 256 * 2**20  # ~36,000 rows of lite0's 1,752 float32 features


class FeatureCache:
    """Feature rows per (image hash, model key), least recently used evicted first."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Hashable) -> np.ndarray | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
            else:
                self._items.move_to_end(key)
                self.hits += 1
            return value

    def put(self, key: Hashable, value: np.ndarray) -> None:
        value = np.ascontiguousarray(value)
        value.flags.writeable = False  # shared between callers: nobody may change a cached row
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            if value.nbytes > self.max_bytes:
                return
            self._items[key] = value
            self._bytes += value.nbytes
            while self._bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= evicted.nbytes

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


_DEFAULT_CACHE = FeatureCache()


def default_feature_cache() -> FeatureCache:
    """The cache this process shares between runs unless a caller passes its own."""
    return _DEFAULT_CACHE


def default_feature_cache_dir() -> Path:
    """The folder that keeps frozen features between processes (the CLI's --feature-cache, the
    app's evidence); INSPECTOR_CACHE_DIR overrides its parent. Not to be confused with
    default_feature_cache(), this process's in-memory cache."""
    root = os.environ.get("INSPECTOR_CACHE_DIR") or Path.home() / ".cache" / "inspector"
    return Path(root) / "features"


def extract_features(model: torch.nn.Module, images: ImageSet, transform, *, model_key: str,
                     device: torch.device, batch_size: int = 32,
                     on_batch: Callable[[int, int, float], None] | None = None,
                     cache: FeatureCache | None = None, ranks: Ranks = SINGLE, progress=NO_PROGRESS,
                     fold: str = "final") -> np.ndarray:
    """Pooled pre-logit features of every image (rows in order); only images missing from the
    cache go through the backbone. on_batch(batch, batches, images_per_s) follows progress, and so
    does `progress` (a ProgressTracker: a "features" step of `fold` over the images not cached).

    With several ranks (torchrun), each computes a shard of the missing images and all of them get
    every row back: N GPUs extract the features N times faster. The ranks' caches hold the same
    rows, so they agree on what is missing."""
    cache = default_feature_cache() if cache is None else cache
    keys = [(h, model_key) for h in images.hashes]
    rows: dict[int, np.ndarray] = {}
    for i, key in enumerate(keys):
        row = cache.get(key)
        if row is not None:
            rows[i] = row
    missing = [i for i in range(len(keys)) if i not in rows]
    mine = [missing[j] for j in ranks.shard(len(missing))]
    start, batches = time.perf_counter(), max(1, -(-len(mine) // batch_size))
    progress.start("features", fold=fold, total=len(mine), unit="images")
    computed = []
    model.eval()
    with torch.inference_mode(), autocast(device):
        for b, first in enumerate(range(0, len(mine), batch_size)):
            chunk = mine[first:first + batch_size]
            # A tiled run's image is the mean of its tiles' features (runtime/tiling.py mean_over_inputs).
            feats, = mean_over_inputs([images.images[i] for i in chunk], lambda im: inputs_of(transform, im),
                                      lambda b: [pooled_features(model, to_device(b, device)).float().cpu().numpy()],
                                      batch_size, torch.stack)
            computed.append(feats)
            if not ranks.active:  # cached as they come: a stopped run keeps what it extracted
                for i, row in zip(chunk, feats):
                    rows[i] = row
                    cache.put(keys[i], row)
            progress.advance(len(chunk))
            if on_batch:
                on_batch(b + 1, batches, (first + len(chunk)) * ranks.world_size
                         / max(time.perf_counter() - start, 1e-9))
    if ranks.active and missing:
        local = np.concatenate(computed) if computed else np.zeros((0, 0), dtype=np.float32)
        for i, row in zip(missing, ranks.gather_rows(local, len(missing))):
            rows[i] = row
            cache.put(keys[i], row)
    if not keys:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([rows[i] for i in range(len(keys))])
