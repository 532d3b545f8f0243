"""Proof that a bundle predicts what the training app predicts, checked right after export.

The bundle's own predict.py is imported from the bundle folder and run with onnxruntime on the
parity images (the run's own images where they still exist, any images the user adds, and a set
of generated probes of awkward sizes and formats: odd aspect ratios that shrink one side and
enlarge the other, a 16-bit grey TIFF, transparency). Each image is decoded by predict.py's
loader and by inspector's, and predicted by both; the export fails unless every label matches
and the largest probability difference is at most `MAX_PROBABILITY_DIFF` (anomaly runs: every
OK/NG verdict matches and each raw score differs by at most `MAX_RELATIVE_SCORE_DIFF` of itself).
Each task's comparison is a `Comparison` in `COMPARISONS`.
"""
from __future__ import annotations

import importlib.util
import io
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from ..errors import ImageLoadError, InspectorError

MAX_PROBABILITY_DIFF = 1e-4
MAX_RELATIVE_SCORE_DIFF = 1e-4
MAX_RUN_IMAGES = 24


@dataclass(frozen=True)
class Comparison:
    """How one task's bundle is compared with its PyTorch predictor."""

    decision: str  # what must agree on every image: "labels", "verdicts"
    values: str  # what is compared in numbers: "probabilities", "raw scores"
    difference: str  # the key of the largest difference in parity.json
    described: str  # the difference in words
    tolerance: float  # its default limit
    torch_outputs: Callable[[Any, list], Any]  # (predictor, RGB arrays) -> outputs
    bundle_outputs: Callable[[Any, list], Any]  # (predict.py's Bundle, RGB arrays) -> outputs
    # (bundle outputs, predictor outputs, bundle, predictor) -> (decisions agree (n,), difference (n,))
    compare: Callable[[Any, Any, Any, Any], tuple[np.ndarray, np.ndarray]]


def _compare_probabilities(got: np.ndarray, expected: np.ndarray, bundle: Any, predictor: Any):
    diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    return got.argmax(1) == expected.argmax(1), diff.max(axis=1)


def _compare_raw_scores(got: np.ndarray, expected: np.ndarray, bundle: Any, predictor: Any):
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    agree = (got > bundle.scale.threshold) == (expected > predictor.threshold)
    return agree, np.abs(got - expected) / np.maximum(np.abs(expected), 1e-12)


COMPARISONS: dict[str, Comparison] = {
    "classification": Comparison("labels", "probabilities", "max_abs_probability_diff", "|probability difference|",
                                 MAX_PROBABILITY_DIFF, lambda p, images: p.predict_proba(images),
                                 lambda b, images: b.predict_proba(images), _compare_probabilities),
    "anomaly": Comparison("verdicts", "raw scores", "max_rel_raw_score_diff", "relative raw-score difference",
                          MAX_RELATIVE_SCORE_DIFF, lambda p, images: p.score(images)[0],
                          lambda b, images: b.score(images)[0], _compare_raw_scores),
}


@dataclass(frozen=True)
class ParityReport:
    n_images: int
    agree: int  # images whose label (anomaly: verdict) is the same
    max_diff: float  # the largest difference: |probability| (anomaly: relative raw score)
    mean_diff: float
    tolerance: float
    worst_image: str
    onnxruntime_images_per_second: float
    sources: dict[str, int] = field(default_factory=dict)
    task: str = "classification"

    @property
    def passed(self) -> bool:
        return self.agree == self.n_images and self.max_diff <= self.tolerance

    @property
    def comparison(self) -> Comparison:
        return COMPARISONS[self.task]

    def to_dict(self) -> dict[str, Any]:
        """parity.json: the task's own names (labels_agree / max_abs_probability_diff for classifiers,
        verdicts_agree / max_rel_raw_score_diff for anomaly models)."""
        c = self.comparison
        data = asdict(self)
        data.update({f"{c.decision}_agree": data.pop("agree"), c.difference: data.pop("max_diff"),
                     c.difference.replace("max_", "mean_", 1): data.pop("mean_diff"), "passed": self.passed})
        return data

    def summary(self) -> str:
        c = self.comparison
        return (f"parity on {self.n_images} images: {self.agree}/{self.n_images} {c.decision} agree, "
                f"max {c.described} {self.max_diff:.2e} (limit {self.tolerance:.0e})")


def load_bundle_module(folder: Path) -> ModuleType:
    """Import the bundle's predict.py under a private name (the same code a line PC runs)."""
    name = f"_inspector_bundle_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, Path(folder) / "predict.py")
    if spec is None or spec.loader is None:
        raise InspectorError(f"The bundle in {folder} has no predict.py.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


def probe_images(seed: int = 0) -> list[tuple[str, bytes]]:
    """Generated files that exercise every resize and decoding path (name, encoded bytes)."""
    rng = np.random.default_rng(seed)

    def texture(h: int, w: int) -> np.ndarray:
        y, x = np.mgrid[0:h, 0:w]
        base = 128 + 60 * np.sin(x / 7.0) * np.cos(y / 11.0)
        rgb = np.stack([base, base[::-1] * 0.8 + 20, np.roll(base, 5, axis=1)], axis=-1)
        return np.clip(rgb + rng.normal(0, 25, rgb.shape), 0, 255).astype(np.uint8)

    def encode(image: Image.Image, fmt: str) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format=fmt)
        return buffer.getvalue()

    probes = [(f"probe_{h}x{w}.png", encode(Image.fromarray(texture(h, w)), "PNG"))
              for h, w in ((97, 131), (272, 219), (123, 286), (600, 244), (448, 448), (1000, 750))]
    grey16 = (np.clip(texture(180, 260)[..., 0].astype(np.float64) * 16, 0, 4095)).astype(np.uint16)
    probes.append(("probe_12bit_grey.tif", encode(Image.fromarray(grey16), "TIFF")))
    rgba = np.dstack([texture(150, 200), np.linspace(0, 255, 200, dtype=np.uint8)[None, :].repeat(150, 0)])
    probes.append(("probe_rgba.png", encode(Image.fromarray(rgba, "RGBA"), "PNG")))
    probes.append(("probe_grey.jpg", encode(Image.fromarray(texture(240, 320)[..., 1]), "JPEG")))
    return probes


def run_images(run_dir: Path, limit: int = MAX_RUN_IMAGES) -> list[Path]:
    """Up to `limit` of the run's evaluated images that are still on disk, spread over classes."""
    from .._io import read_json
    from ..runs import EVALUATION_FILE

    try:
        evaluation = read_json(Path(run_dir) / EVALUATION_FILE)
        rows = evaluation.get("predictions") or evaluation.get("defects") or []  # anomaly runs: the defects
    except Exception:  # noqa: BLE001 - no evaluation, or an older layout: probes only
        return []
    paths = [Path(r["path"]) for r in rows if isinstance(r, dict) and r.get("path")]
    existing = [p for p in paths if p.is_file()]
    step = max(1, len(existing) // limit)
    return existing[::step][:limit]


def check_parity(bundle_dir: Path, predictor: Any, images: Sequence[tuple[str, bytes]],
                 tolerance: float | None = None, task: str = "classification") -> ParityReport:
    """Run the bundle's predict.py and the PyTorch Predictor on the same files and compare them as
    `COMPARISONS[task]` says (tolerance: its default unless given)."""
    from ..data import load_image, to_rgb_array

    module = load_bundle_module(bundle_dir)
    bundle = module.Bundle(bundle_dir)
    names, ours, theirs = [], [], []
    for name, data in images:
        try:
            ours.append(to_rgb_array(load_image(data)))
        except ImageLoadError:
            continue  # unreadable for the app too: nothing to compare
        theirs.append(module.to_rgb_array(module.load_image(data)))
        names.append(name)
    if not names:
        raise InspectorError("No readable image to check the export with.")
    c = COMPARISONS[task]
    expected = c.torch_outputs(predictor, ours)
    c.bundle_outputs(bundle, theirs[:1])  # first call: session warm-up, not timed
    start = time.perf_counter()
    got = c.bundle_outputs(bundle, theirs)
    rate = len(theirs) / max(time.perf_counter() - start, 1e-9)
    agree, per_image = c.compare(got, expected, bundle, predictor)
    return ParityReport(len(names), int(np.sum(agree)), float(per_image.max()), float(per_image.mean()),
                        c.tolerance if tolerance is None else tolerance, names[int(per_image.argmax())],
                        round(rate, 2), task=task)


def require_parity(report: ParityReport) -> None:
    if report.passed:
        return
    c = report.comparison
    if report.agree < report.n_images:
        problem = f"the exported model gives a different {c.decision[:-1]} on {report.n_images - report.agree} " \
                  f"of {report.n_images} test images"
    else:
        problem = f"the exported model's {c.values} differ by up to {report.max_diff:.1e} " \
                  f"({c.described}, allowed {report.tolerance:.0e}), worst on {report.worst_image}"
    raise InspectorError(f"The export was not saved: {problem}. The bundle would not predict like the app "
                         "(float32 arithmetic differs between PyTorch and ONNX Runtime; on undecided images of "
                         "models with very large scores this can pass the limit: --max-diff raises it).")
