"""Images in memory and batches for training (frozen features: engine/features.py)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..data import load_image, to_rgb_array
from .distributed import SINGLE, Ranks


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


def _decode(path, max_side: int | None, bit_depth: int | None) -> np.ndarray:
    image = load_image(path, bit_depth=bit_depth)
    if max_side is not None and max(image.size) > max_side:  # keep memory bounded; the model input is smaller anyway
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return to_rgb_array(image)


def load_image_set(dataset, image_size: int, bit_depth: int | None = None,
                   on_image: Callable[[], None] | None = None, full_size: bool = False) -> ImageSet:
    """Decode every sample of a LabeledDataset once (threads: PIL releases the GIL); `bit_depth`: the
    camera bit depth of its 16-bit images (runtime.images.load_image). on_image() after each image.
    Images are kept at most twice the input size, or with `full_size` as the camera took them (tiled
    runs: a tile's side is in camera pixels)."""
    max_side = None if full_size else max(2 * image_size, 512)
    images = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        for image in pool.map(lambda s: _decode(s.path, max_side, bit_depth), dataset.samples):
            images.append(image)
            if on_image:
                on_image()
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
                device: torch.device, workers: int | None = None, ranks: Ranks = SINGLE) -> DataLoader:
    """Batches of transformed images. With several ranks, each gets its own shard of every epoch
    (DistributedSampler: call `loader.sampler.set_epoch(epoch)`) and `batch_size` is per rank."""
    workers = default_workers(device) if workers is None else workers
    generator = torch.Generator().manual_seed(seed)
    dataset = _TransformedImages(images, transform)
    sampler = (DistributedSampler(dataset, num_replicas=ranks.world_size, rank=ranks.rank, shuffle=shuffle, seed=seed)
               if ranks.active else None)
    shard = len(images) // ranks.world_size
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      drop_last=shuffle and shard > batch_size, generator=generator,
                      num_workers=workers, pin_memory=device.type == "cuda",
                      persistent_workers=False)
