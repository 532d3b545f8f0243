"""Two models on the same images: is one really better (compare_runs: `inspector compare` and the
Compare page), and image by image, where do they disagree (the Compare page's gallery)."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from .data import discover_dataset
from .errors import ImageLoadError, InspectorError
from .evidence.paired import PairedComparison, compare_predictions, negative_transfer_note
from .inference import Predictor
from .runs import Run, RunStore
from .tasks.base import bit_depth_of, decode_for


@dataclass(frozen=True)
class PairedPrediction:
    """One image seen by two models: its true label, each model's class and confidence (0-1)."""

    path: str
    true: str
    a: str
    b: str
    pa: float
    pb: float

    @property
    def disagree(self) -> bool:
        return self.a != self.b


@dataclass(frozen=True)
class RunComparison:
    """What `compare_runs` found: the paired test, which runs, on which images, and their speed.

    `to_dict()` is the flat JSON of `inspector compare --json` (a contract other tools read).
    """

    paired: PairedComparison
    run_a: str  # run folders
    run_b: str
    scored_on: str  # the evaluation folder, or "the runs' validation predictions"
    negative_transfer: str | None  # the plain warning of evidence.paired.negative_transfer_note
    inference_ms_a: float | None  # milliseconds per image, as measured after training (None if never)
    inference_ms_b: float | None

    def to_dict(self) -> dict[str, Any]:
        """The paired comparison's fields, then run_a, run_b, scored_on, negative_transfer,
        inference_ms_a and inference_ms_b, all flat in one object."""
        return {**self.paired.to_dict(), "run_a": self.run_a, "run_b": self.run_b, "scored_on": self.scored_on,
                "negative_transfer": self.negative_transfer, "inference_ms_a": self.inference_ms_a,
                "inference_ms_b": self.inference_ms_b}


def paired_predictions(run_a: str | Path, run_b: str | Path, samples: Sequence[tuple[Path, str]], *,
                       batch_size: int = 32, on_progress: Callable[[float], None] | None = None,
                       stop_event: threading.Event | None = None) -> list[PairedPrediction]:
    """One row per readable image of `samples` (path, true label), in their order; unreadable images
    are skipped, and a set `stop_event` ends it early with the rows so far. `on_progress` gets the
    fraction done (0-1). Batched, so 300 images take seconds rather than the minutes of
    one-at-a-time predictions."""
    a, b = Predictor.from_run(run_a), Predictor.from_run(run_b)
    rows: list[PairedPrediction] = []
    for first in range(0, len(samples), batch_size):
        if stop_event is not None and stop_event.is_set():
            break
        chunk, images = [], []
        for path, label in samples[first:first + batch_size]:
            try:
                images.append(decode_for(a, path))
                chunk.append((path, label))
            except ImageLoadError:
                continue  # removed or damaged since it was listed: not part of the comparison
        if images:
            # Each run sees the images as it was trained (16-bit: its own camera bit depth).
            same = bit_depth_of(a) == bit_depth_of(b)
            images_b = images if same else [decode_for(b, path) for path, _ in chunk]
            for (path, label), pa, pb in zip(chunk, a.predict_batch(images, batch_size),
                                             b.predict_batch(images_b, batch_size)):
                rows.append(PairedPrediction(str(path), label, pa.label, pb.label, pa.confidence, pb.confidence))
        if on_progress:
            on_progress(min(1.0, (first + batch_size) / max(len(samples), 1)))
    return rows


def time_per_image(run_dir: str | Path, paths: Sequence[Path]) -> float:
    """Milliseconds per image, one image per call (as on an inspection station), after a warm-up."""
    predictor = Predictor.from_run(run_dir)
    images = [decode_for(predictor, p) for p in paths]
    if not images:
        return float("nan")
    predictor.predict(images[0])  # warm-up: first-call costs are not what the line sees
    start = time.perf_counter()
    for image in images:
        predictor.predict(image)
    return 1000 * (time.perf_counter() - start) / len(images)


def open_run(name: str | Path, runs_dir: Path) -> Run:
    """A run from a folder path or an id under runs_dir (a plain error when neither exists)."""
    if Path(name).is_dir():
        run = Run(name)
        run.record()
        return run
    return RunStore(runs_dir).get(name)


# The prediction rows below stay dicts: they are evaluation.json's rows ("path", "label", "predicted"),
# read from JSON or built in that shape, and go straight into compare_predictions, which takes them.
def stored_predictions(run: Run) -> list[dict[str, Any]]:
    """The run's per-image validation predictions as stored in evaluation.json.

    Raises:
        InspectorError: the run has none (trained without a validation estimate, or by an older version).
    """
    evaluation = run.evaluation() or {}
    predictions = evaluation.get("predictions")
    if not predictions:
        raise InspectorError(f"Run {run.run_id} has no stored per-image validation predictions (trained without a "
                             "validation estimate, or by an older version). Compare on an evaluation folder instead: "
                             "inspector compare RUN_A RUN_B DATA")
    return predictions


def predictions_on(run: Run, dataset, device: str) -> list[dict[str, Any]]:
    """Each image of `dataset` (a LabeledDataset) predicted by `run`: rows of "path", "label" (true)
    and "predicted", as evaluation.json stores them.

    Raises:
        InspectorError: the data has classes the run was not trained on.
    """
    predictor = Predictor.from_run(run.path, device=device)
    unknown = sorted(set(dataset.classes) - set(predictor.classes))
    if unknown:
        raise InspectorError(f"The data has classes run {run.run_id} was not trained on: {', '.join(unknown)}.")
    probabilities = predictor.predict_proba(dataset.paths)
    return [{"path": str(s.path), "label": s.label, "predicted": predictor.classes[int(row.argmax())]}
            for s, row in zip(dataset.samples, probabilities)]


def compare_runs(run_a: str | Path, run_b: str | Path, data: str | None = None, *, runs_dir: Path,
                 device: str = "auto", alpha: float = 0.05, extract_dir: Path | None = None) -> RunComparison:
    """`inspector compare` and the Compare page: is run A really better than run B on the same images?

    Args:
        run_a, run_b: run folders or run ids under `runs_dir`.
        data: a labeled folder or .zip both runs predict; None pairs the runs' stored validation predictions.
        alpha: significance level of McNemar's exact test.

    Raises:
        InspectorError: the same run twice, a run without stored predictions, data without a usable image
            or with classes a run does not know, or runs scored on different images or labels.
    """
    a, b = open_run(run_a, runs_dir), open_run(run_b, runs_dir)
    if a.path.resolve() == b.path.resolve():
        raise InspectorError("RUN_A and RUN_B are the same run.")
    info_a, info_b = a.info(), b.info()
    if data is None:
        preds_a, preds_b, source = stored_predictions(a), stored_predictions(b), "the runs' validation predictions"
    else:
        dataset = discover_dataset(data, extract_dir=extract_dir, split="test")  # a split layout: its test/
        if not len(dataset):
            raise InspectorError(f"No usable image in {data}.")
        preds_a, preds_b, source = predictions_on(a, dataset, device), predictions_on(b, dataset, device), str(data)
    result = compare_predictions(preds_a, preds_b, name_a=f"A ({info_a.name})", name_b=f"B ({info_b.name})",
                                 alpha=alpha)
    note = negative_transfer_note(info_a, info_b, result)
    return RunComparison(result, str(a.path), str(b.path), source, note, info_a.run_summary.inference_ms_per_image,
                         info_b.run_summary.inference_ms_per_image)
