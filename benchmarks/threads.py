"""Threads and loader workers on this machine: feature-extraction and fine-tuning images/s.

    python benchmarks/threads.py DATASET [--images 64] [--batch-size 16]

The engine keeps torch's default thread count (one per physical core) and, on a CPU, loads
batches in the training process itself (inspector.engine.loaders.default_workers). This prints
what each alternative measures, so the defaults can be checked on a new machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import time

import torch

from _common import machine_header

from inspector.augment import build_transform, resolve_preprocessing
from inspector.data import discover_dataset
from inspector.engine.features import FeatureCache, extract_features
from inspector.engine.loaders import default_workers, load_image_set, make_loader
from inspector.models import build_model

CPU = torch.device("cpu")


def extraction_rate(model, images, prep, batch_size: int) -> float:
    transform = build_transform(prep, "none")
    start = time.perf_counter()
    extract_features(model, images, transform, model_key="threads-benchmark", device=CPU,
                     batch_size=batch_size, cache=FeatureCache())  # a fresh cache: every image computed
    return len(images) / (time.perf_counter() - start)


def training_rate(backbone: str, images, prep, batch_size: int, workers: int) -> float:
    """Fine-tuning images/s over the second of two epochs (the first warms up)."""
    model = build_model(backbone, int(images.labels.max()) + 1).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loader = make_loader(images, build_transform(prep, "industrial", seed=0), batch_size=batch_size,
                         shuffle=True, seed=0, device=CPU, workers=workers)
    for epoch in range(2):
        start, seen = time.perf_counter(), 0
        for x, y in loader:  # worker start-up counts: the engine starts them every epoch too
            loss = torch.nn.functional.cross_entropy(model(x.to(memory_format=torch.channels_last)), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(y)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset")
    parser.add_argument("--images", type=int, default=64, help="how many of the dataset's images to use")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    args = parser.parse_args()
    dataset = discover_dataset(args.dataset)
    # Every n-th sample, so that the subset spans the classes (folders are listed in order).
    step = max(1, len(dataset) // args.images)
    dataset = dataclasses.replace(dataset, samples=dataset.samples[::step][: args.images])
    prep = resolve_preprocessing(args.backbone)
    images = load_image_set(dataset, prep.image_size)
    default_threads = torch.get_num_threads()
    print(machine_header())  # torch's thread count is still its default here
    print(f"# {len(images)} images, {prep.image_size} px, batch {args.batch_size}, "
          f"engine's CPU loader workers {default_workers(CPU)}")

    model = build_model(args.backbone, len(dataset.classes), "multiscale")
    for threads in sorted({1, max(1, default_threads // 2), default_threads, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        rate = extraction_rate(model, images, prep, 32)
        print(f"feature extraction  threads {threads:2d}{' (default)' if threads == default_threads else '':10s}"
              f"  {rate:6.1f} images/s", flush=True)
    torch.set_num_threads(default_threads)
    for workers in (0, 1, 2):
        rate = training_rate(args.backbone, images, prep, args.batch_size, workers)
        print(f"fine-tuning         workers {workers}{' (default)' if workers == default_workers(CPU) else '':10s}"
              f"  {rate:6.1f} images/s", flush=True)


if __name__ == "__main__":
    main()
