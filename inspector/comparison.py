"""Two models on the same images, image by image: where they disagree (the Compare page's gallery)."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Sequence

from .data import load_image, to_rgb_array
from .errors import ImageLoadError
from .inference import Predictor


def paired_predictions(run_a: str | Path, run_b: str | Path, samples: Sequence[tuple[Path, str]], *,
                       batch_size: int = 32, on_progress: Callable[[float], None] | None = None,
                       stop_event: threading.Event | None = None) -> list[dict]:
    """One row per readable image: true label, each model's class and confidence. Batched, so 300
    images take seconds rather than the minutes of one-at-a-time predictions."""
    a, b = Predictor.from_run(run_a), Predictor.from_run(run_b)
    rows: list[dict] = []
    for first in range(0, len(samples), batch_size):
        if stop_event is not None and stop_event.is_set():
            break
        chunk, images = [], []
        for path, label in samples[first:first + batch_size]:
            try:
                images.append(to_rgb_array(load_image(path)))
                chunk.append((path, label))
            except ImageLoadError:
                continue  # removed or damaged since it was listed: not part of the comparison
        if images:
            for (path, label), pa, pb in zip(chunk, a.predict_batch(images, batch_size),
                                             b.predict_batch(images, batch_size)):
                rows.append({"path": str(path), "true": label, "a": pa.label, "pa": pa.confidence,
                             "b": pb.label, "pb": pb.confidence})
        if on_progress:
            on_progress(min(1.0, (first + batch_size) / max(len(samples), 1)))
    return rows


def time_per_image(run_dir: str | Path, paths: Sequence[Path]) -> float:
    """Milliseconds per image, one image per call (as on an inspection station), after a warm-up."""
    predictor = Predictor.from_run(run_dir)
    images = [to_rgb_array(load_image(p)) for p in paths]
    if not images:
        return float("nan")
    predictor.predict(images[0])  # warm-up: first-call costs are not what the line sees
    start = time.perf_counter()
    for image in images:
        predictor.predict(image)
    return 1000 * (time.perf_counter() - start) / len(images)
