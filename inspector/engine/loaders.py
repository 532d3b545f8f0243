"""Images in memory, batches for training, and frozen features with a cache."""
from __future__ import annotations

import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..data import load_image, to_rgb_array
from ..models import pooled_features
from .device import autocast, to_device


@dataclass
class ImageSet:
    """Decoded RGB images with labels and content hashes (hashes key the feature cache)."""

    images: list[np.ndarray]
    labels: np.ndarray
    hashes: list[str]

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: Sequence[int]) -> ImageSet:
        idx = list(map(int, indices))
        return ImageSet([self.images[i] for i in idx], self.labels[idx], [self.hashes[i] for i in idx])


def _decode(path, max_side: int) -> np.ndarray:
    image = load_image(path)
    if max(image.size) > max_side:  # keep memory bounded; the model input is smaller anyway
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return to_rgb_array(image)


def load_image_set(dataset, image_size: int) -> ImageSet:
    """Decode every sample of a LabeledDataset once (threads: PIL releases the GIL)."""
    max_side = max(2 * image_size, 512)
    with ThreadPoolExecutor(max_workers=4) as pool:
        images = list(pool.map(lambda s: _decode(s.path, max_side), dataset.samples))
    return ImageSet(images, np.asarray(dataset.labels, dtype=np.int64), [s.sha256 for s in dataset.samples])


class _TransformedImages(Dataset):
    def __init__(self, images: ImageSet, transform: Callable[[np.ndarray], torch.Tensor]) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(self.images.images[index]), int(self.images.labels[index])


def default_workers(device: torch.device) -> int:
    # Images are already decoded, so augmentation is cheap next to the model: on a CPU, worker
    # processes only steal cores from it (benchmarks/threads.py measures this). On a GPU they keep it fed.
    return 0 if device.type == "cpu" else min(4, torch.get_num_threads())


def make_loader(images: ImageSet, transform, *, batch_size: int, shuffle: bool, seed: int,
                device: torch.device, workers: int | None = None) -> DataLoader:
    workers = default_workers(device) if workers is None else workers
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(_TransformedImages(images, transform), batch_size=batch_size, shuffle=shuffle,
                      drop_last=shuffle and len(images) > batch_size, generator=generator,
                      num_workers=workers, pin_memory=device.type == "cuda",
                      persistent_workers=False)


class FeatureCache:
    """Frozen-backbone features per (image hash, model key, view); shared across folds and runs."""

    def __init__(self, max_items: int = 200_000) -> None:
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.max_items = max_items
        self.hits = self.misses = 0

    def get(self, key: tuple) -> np.ndarray | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
            self.hits += 1
        return value

    def put(self, key: tuple, value: np.ndarray) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


FEATURE_CACHE = FeatureCache()


def extract_features(model: torch.nn.Module, images: ImageSet, transform, *, model_key: str, view: str,
                     device: torch.device, batch_size: int = 32,
                     on_batch: Callable[[int, int, float], None] | None = None,
                     cache: FeatureCache = FEATURE_CACHE) -> np.ndarray:
    """Pooled pre-logit features of every image for one view (a view = a transform + seed).

    Only images missing from the cache go through the backbone.
    """
    keys = [(h, model_key, view) for h in images.hashes]
    missing = [i for i, key in enumerate(keys) if cache.get(key) is None]
    cache.misses += len(missing)
    start, batches = time.perf_counter(), max(1, -(-len(missing) // batch_size))
    model.eval()
    with torch.inference_mode(), autocast(device):
        for b, first in enumerate(range(0, len(missing), batch_size)):
            chunk = missing[first:first + batch_size]
            batch = torch.stack([transform(images.images[i]) for i in chunk])
            feats = pooled_features(model, to_device(batch, device))
            for i, row in zip(chunk, feats.float().cpu().numpy()):
                cache.put(keys[i], row)
            if on_batch:
                done = first + len(chunk)
                on_batch(b + 1, batches, done / max(time.perf_counter() - start, 1e-9))
    return np.stack([cache.get(key) for key in keys])
