"""Proof that a bundle predicts what the training app predicts, checked right after export.

The bundle's own predict.py is imported from the bundle folder and run with onnxruntime on the
parity images (the run's own images where they still exist, any images the user adds, and a set
of generated probes of awkward sizes and formats: odd aspect ratios that shrink one side and
enlarge the other, line-scan strips up to 500:1 both ways, a 16-bit grey TIFF, transparency; every
probe goes through the run's own resize mode, whichever it is). Each image is decoded by
predict.py's loader and by inspector's, and predicted by both. How they are compared is the
task's `ParityRule` (`Task.parity`).

What is compared, and why (issue 19, kind 3). Both sides feed the model the very same uint8
pixels (runtime.resize.fit_to_input, copied unchanged into the bundle), so what is left to differ
is float32 arithmetic: PyTorch and ONNX Runtime sum in other orders. That error grows with the size
of the numbers summed, not with how decided a prediction is. Probabilities were the wrong measure:
a softmax passes the logits' error on multiplied by p(1 - p), so a plain crop-mode linear probe on
the sample data (224 px, logits near 400) was refused at 1.3e-4 on an undecided probe
(limit 1e-4) with identical pixels on both sides. So:

- classifiers: every label agrees (unless PyTorch's own top two logits tie within float32
  reach) and the largest logit difference, relative to the image's largest |logit| (at least 1),
  is at most 1e-4. Measured on that run (39 images): 2.2e-6 at most from arithmetic (45x inside).
  Real preprocessing differences, measured against the same scale (the largest over its probes and
  a tenth of the sample images): a one-pixel shift 1.0e-1 (and 1.0e-3 on every single image), a
  red/blue swap 3.0e-2, bilinear for bicubic 3.6e-2, no area averaging 5.6e-2, stretch for crop
  1.4e-1; even brightening every pixel by one grey level reaches 6.1e-4. Injected into a bundle of
  a 128 px stretch run (tests/test_parity_shapes.py) they are refused at 4e-2 to 2e-1. The
  probability difference is still written to parity.json (max_abs_probability_diff,
  mean_abs_probability_diff) but does not decide; `tolerance_applies_to` names the key that does.
- anomaly models: every OK/NG verdict agrees (unless the raw score lies on the threshold within
  the tolerance) and each raw score is within 1e-4 of itself, relative (already a relative measure).
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
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..errors import ImageLoadError, InspectorError
from ..runtime.tiling import tile_boxes
from ..tasks.base import DEFAULT_TASK, ParityRule, create_task

MAX_RUN_IMAGES = 24


def parity_rule(task: str) -> ParityRule:
    """The task's rule (what must agree, what is compared in numbers, the default limit)."""
    rule = create_task(task).parity
    if rule is None:
        raise InspectorError(f"Runs of the task '{task}' cannot be exported.")
    return rule


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
    task: str = DEFAULT_TASK
    figures: dict[str, float] = field(default_factory=dict)  # the rule's `reported` differences (max_, mean_)

    @property
    def passed(self) -> bool:
        return self.agree == self.n_images and self.max_diff <= self.tolerance

    @property
    def comparison(self) -> ParityRule:
        return parity_rule(self.task)

    def to_dict(self) -> dict[str, Any]:
        """parity.json: the task's own names (labels_agree / max_rel_logit_diff for classifiers, with
        max_abs_probability_diff reported; verdicts_agree / max_rel_raw_score_diff for anomaly models),
        and `tolerance_applies_to`: the key `tolerance` limits."""
        c = self.comparison
        data = asdict(self)
        data.update({f"{c.decision}_agree": data.pop("agree"), c.difference: data.pop("max_diff"),
                     c.difference.replace("max_", "mean_", 1): data.pop("mean_diff"), **data.pop("figures"),
                     "tolerance_applies_to": c.difference, "passed": self.passed})
        return data

    def summary(self) -> str:
        c = self.comparison
        return (f"parity on {self.n_images} images: {self.agree}/{self.n_images} {c.decision} agree, "
                f"max {c.described} {self.max_diff:.2e} (limit {self.tolerance:.0e})")


def load_bundle_module(folder: Path) -> ModuleType:
    """Import the bundle's predict.py under a private name (the same code a line PC runs). The
    predict.py loads its inspector_runtime/ under a name of its own each time, so two bundles (or
    a bundle and inspector.runtime) in one process never share modules."""
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


MAX_PROBE_TILES = 64  # a tiled run's probes: more tiles than this check the same crop-and-resize path again


def probe_images(seed: int = 0, tiling: dict | None = None) -> list[tuple[str, bytes]]:
    """Generated files that exercise every resize and decoding path (name, encoded bytes). For a tiled
    run (`tiling`, runtime/tiling.py) the strips that would make more than MAX_PROBE_TILES tiles are left
    out: an 8 x 4000 strip is 667 tiles of 8 px, each enlarged to the input, minutes of export for no new path."""
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

    # Odd sizes that shrink one side and enlarge the other, whole multiples, and line-scan strips both
    # ways, kept small: 48 x 16384 (one side shrinks 70x while the other is enlarged 5x; crop enlarges
    # both), 300 x 1600 (a 3000 x 16000 frame's 5.3:1 at a tenth of its pixels) and 8 x 4000 (500:1:
    # a letterbox leaves one row of image).
    sizes = ((97, 131), (272, 219), (123, 286), (600, 244), (448, 448), (1000, 750), (48, 16384),
             (16384, 48), (300, 1600), (1600, 300), (8, 4000), (4000, 8))
    if tiling:
        sizes = tuple((h, w) for h, w in sizes if len(tile_boxes(h, w, int(tiling["tile"]))) <= MAX_PROBE_TILES)
    probes = [(f"probe_{h}x{w}.png", encode(Image.fromarray(texture(h, w)), "PNG")) for h, w in sizes]
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
                 tolerance: float | None = None, task: str = DEFAULT_TASK) -> ParityReport:
    """Run the bundle's predict.py and the PyTorch Predictor on the same files and compare them as
    the task's `ParityRule` says (tolerance: its default unless given)."""
    from ..tasks.base import decode_for

    module = load_bundle_module(bundle_dir)
    bundle = module.Bundle(bundle_dir)
    names, ours, theirs = [], [], []
    for name, data in images:
        try:
            ours.append(decode_for(predictor, data))  # as the app decodes for this run (its 16-bit depth)
        except ImageLoadError:
            continue  # unreadable for the app too: nothing to compare
        # ... and as the bundle does, from its own preprocessing.json
        theirs.append(module.to_rgb_array(module.load_image(data, bit_depth=bundle.preprocessing.get("bit_depth"))))
        names.append(name)
    if not names:
        raise InspectorError("No readable image to check the export with.")
    c = parity_rule(task)
    expected = c.torch_outputs(predictor, ours)
    c.bundle_outputs(bundle, theirs[:1])  # first call: session warm-up, not timed
    start = time.perf_counter()
    got = c.bundle_outputs(bundle, theirs)
    rate = len(theirs) / max(time.perf_counter() - start, 1e-9)
    agree, per_image = c.compare(got, expected, bundle, predictor)
    figures = {}
    for key, values in (c.reported(got, expected) if c.reported else {}).items():
        figures.update({key: float(np.max(values)), key.replace("max_", "mean_", 1): float(np.mean(values))})
    return ParityReport(len(names), int(np.sum(agree)), float(per_image.max()), float(per_image.mean()),
                        c.tolerance if tolerance is None else tolerance, names[int(per_image.argmax())],
                        round(rate, 2), task=task, figures=figures)


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
    raise InspectorError(f"The export was not saved: {problem}. The bundle would not predict like the app: "
                         "that is more than float32 arithmetic (PyTorch vs ONNX Runtime) explains, so the "
                         "bundle's input or model differs from the app's (--max-diff raises the limit).")
