"""Two models on the same images: is one really better (compare_runs: `inspector compare` and the
Compare page), and image by image, where do they disagree (the Compare page's gallery)."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Sequence

from .data import discover_dataset, load_image, to_rgb_array
from .errors import ImageLoadError, InspectorError
from .evidence.paired import compare_predictions, negative_transfer_note
from .inference import Predictor
from .runs import Run, RunStore


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


def open_run(name: str, runs_dir: Path):
    """A run from a folder path or an id under runs_dir (a plain error when neither exists)."""
    if Path(name).is_dir():
        run = Run(name)
        run.record()
        return run
    return RunStore(runs_dir).get(name)


def stored_predictions(run) -> list[dict]:
    evaluation = run.evaluation() or {}
    predictions = evaluation.get("predictions")
    if not predictions:
        raise InspectorError(f"Run {run.run_id} has no stored per-image validation predictions (trained without a "
                             "validation estimate, or by an older version). Compare on an evaluation folder instead: "
                             "inspector compare RUN_A RUN_B DATA")
    return predictions


def predictions_on(run, dataset, device: str) -> list[dict]:
    """Each image of `dataset` predicted by `run`: rows of path, true label, predicted label."""
    predictor = Predictor.from_run(run.path, device=device)
    unknown = sorted(set(dataset.classes) - set(predictor.classes))
    if unknown:
        raise InspectorError(f"The data has classes run {run.run_id} was not trained on: {', '.join(unknown)}.")
    probabilities = predictor.predict_proba(dataset.paths)
    return [{"path": str(s.path), "label": s.label, "predicted": predictor.classes[int(row.argmax())]}
            for s, row in zip(dataset.samples, probabilities)]


def compare_runs(run_a: str, run_b: str, data: str | None = None, *, runs_dir: Path, device: str = "auto",
                 alpha: float = 0.05, extract_dir: Path | None = None) -> dict:
    """`inspector compare` and the Compare page: is run A really better than run B on the same images?"""
    a, b = open_run(run_a, runs_dir), open_run(run_b, runs_dir)
    if a.path.resolve() == b.path.resolve():
        raise InspectorError("RUN_A and RUN_B are the same run.")
    info_a, info_b = a.info(), b.info()
    if data is None:
        preds_a, preds_b, source = stored_predictions(a), stored_predictions(b), "the runs' validation predictions"
    else:
        dataset = discover_dataset(data, extract_dir=extract_dir)
        if not len(dataset):
            raise InspectorError(f"No usable image in {data}.")
        preds_a, preds_b, source = predictions_on(a, dataset, device), predictions_on(b, dataset, device), str(data)
    result = compare_predictions(preds_a, preds_b, name_a=f"A ({info_a.name})", name_b=f"B ({info_b.name})",
                                 alpha=alpha)
    note = negative_transfer_note(info_a, info_b, result)
    return {**result.to_dict(), "run_a": str(a.path), "run_b": str(b.path), "scored_on": source,
            "negative_transfer": note, "inference_ms_a": info_a.run_summary.inference_ms_per_image,
            "inference_ms_b": info_b.run_summary.inference_ms_per_image}
