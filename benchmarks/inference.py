"""Inference throughput of a trained run: eager vs torch.compile, batch 32, images/s.

    python benchmarks/inference.py RUN_DIR IMAGE_FOLDER [--images 256] [--batch-size 32]

Decoding is done once up front, so the figures are preprocessing + model only.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from inspector import Predictor
from inspector.data import is_image_path, load_image, to_rgb_array


def images_per_second(predictor: Predictor, images, batch_size: int) -> float:
    predictor.predict_proba(images[:batch_size], batch_size)  # warm-up (and compile)
    start = time.perf_counter()
    predictor.predict_proba(images, batch_size)
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("images")
    parser.add_argument("--images", dest="count", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    paths = sorted(p for p in Path(args.images).rglob("*") if is_image_path(p))[: args.count]
    images = [to_rgb_array(load_image(p)) for p in paths]
    print(f"# {len(images)} images, batch {args.batch_size}, {torch.get_num_threads()} threads")
    for compile_model in (False, True):
        start = time.perf_counter()
        predictor = Predictor.from_run(args.run_dir, compile=compile_model)
        rate = images_per_second(predictor, images, args.batch_size)
        setup = time.perf_counter() - start - len(images) / rate
        size = predictor.preprocessing.image_size
        print(f"{'compiled' if compile_model else 'eager':8s}  {size} px  {rate:6.1f} images/s  "
              f"(load + warm-up {setup:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
