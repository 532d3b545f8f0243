"""Reading an exported bundle folder: model.onnx (or OpenVINO's model.xml), preprocessing.json and
labels.json; onnxruntime or openvino is imported only when a Bundle is opened.

How an image becomes the model input (this is what makes the bundle agree with the training app):
1. decoding with the app's own loader (images.py: EXIF orientation, transparency onto white,
   16-bit scaled by the bit depth it really uses, the pixel limit);
2. resizing to the model's square input with the resize mode in preprocessing.json (resize.py,
   the very code the training pipeline uses), or, for a tiled model, cutting it into tiles at the
   run's pixel scale, each resized to that input (tiling.py): a classifier's image is the mean of its
   tiles' outputs; the regions to inspect and to ignore (regions.py) say which patches are scored;
3. everything else (normalisation, symmetric views, pooling, the head, softmax; for anomaly models
   the patch features and their distances to the good parts' memory bank) is inside the model,
   whose input is the resized uint8 RGB image, shape (batch, size, size, 3).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .errors import ImageLoadError, InspectorError
from .images import broken_link_reason, is_image_path, is_mask_folder, load_image, to_rgb_array, walk_files
from .outputs import LOGITS_OUTPUT, output_reader
from .regions import regions_of
from .resize import fit_to_input
from .tiling import ImageMaps, mean_over_inputs, model_inputs
from .rows import guard_rows

MODEL_FILE, OPENVINO_FILE = "model.onnx", "model.xml"
PREPROCESSING_FILE, LABELS_FILE = "preprocessing.json", "labels.json"


class Bundle:
    """An exported model folder, ready to predict.

    `run(batch)` gives the model's first output and `run_all(batch)` all of them, for a uint8
    batch (n, size, size, 3); `prepare` resizes one RGB image to that input. `rows(images)` gives
    one result dict per image as `inspector predict --json` does. `outputs` reads the model's
    outputs (see outputs.py); its fields (anomaly models: `scale`, `threshold`, `target_frr`,
    `ok_classes`) are attributes of the bundle too.

    threads: ONNX Runtime / OpenVINO threads (default: $INSPECTOR_THREADS, else all cores).
    target_frr: anomaly models: another false-reject target than the trained one.
    Raises InspectorError when the folder is no bundle or target_frr is outside (0, 1).
    """

    def __init__(self, folder: str | os.PathLike, threads: int | None = None,
                 target_frr: float | None = None) -> None:
        self.folder = Path(folder)
        if not (self.folder / LABELS_FILE).is_file():
            raise InspectorError(f"{self.folder} is not an exported bundle (no {LABELS_FILE}).")
        self.preprocessing: dict[str, Any] = json.loads((self.folder / PREPROCESSING_FILE).read_text(encoding="utf-8"))
        self.labels: dict[str, Any] = json.loads((self.folder / LABELS_FILE).read_text(encoding="utf-8"))
        self.classes = list(self.labels["classes"])
        self.task = self.labels.get("task")  # the task's name, as the run stored it (for headers)
        self.outputs = output_reader(self.labels, target_frr)
        vars(self).update(self.outputs.fields())
        self.regions = regions_of(self.preprocessing)
        threads = threads or int(os.environ.get("INSPECTOR_THREADS", 0)) or (os.cpu_count() or 1)
        if (self.folder / OPENVINO_FILE).is_file():
            self.backend, self.run_all = "openvino", _openvino_runner(self.folder / OPENVINO_FILE, threads)
        else:
            self.backend, self.run_all = "onnxruntime", _onnxruntime_runner(self.folder / MODEL_FILE, threads)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The model's first output for a uint8 batch (n, size, size, 3)."""
        return self.run_all(batch)[0]

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 (H, W, 3) of any size -> the model input (size, size, 3)."""
        return fit_to_input(image, self.preprocessing)

    def mean_outputs(self, images: Sequence[np.ndarray], batch_size: int = 32) -> list[np.ndarray]:
        """Every model output of each RGB uint8 image, averaged over its inputs (the whole image, or its
        tiles streamed `batch_size` at a time: tiling.mean_over_inputs), (n, ...) float32 each; [] for none."""
        return mean_over_inputs(images, lambda im: (item.pixels for item in model_inputs(im, self.preprocessing)),
                                self.run_all, batch_size)

    def classifier_outputs(self, images: Sequence[np.ndarray], batch_size: int = 32) -> list[np.ndarray]:
        """Classifiers: the model's outputs per image (probabilities (n, classes) first; see `mean_outputs`).
        A tiled model's probabilities are the softmax of its tiles' mean logits, the PyTorch predictor's."""
        outputs = self.mean_outputs(images, batch_size)
        if not outputs:
            return [np.zeros((0, len(self.classes)), dtype=np.float32)]
        if self.preprocessing.get("tiling"):
            logits = outputs[list(self.labels["outputs"]).index(LOGITS_OUTPUT)].astype(np.float64)
            z = np.exp(logits - logits.max(axis=1, keepdims=True))
            outputs[0] = (z / z.sum(axis=1, keepdims=True)).astype(np.float32)
        return outputs

    def predict_proba(self, images: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Classifiers: class probabilities (n, classes) float32 of RGB uint8 arrays of any size."""
        return self.classifier_outputs(images, batch_size)[0]

    def score(self, images: Sequence[np.ndarray], batch_size: int = 32) -> tuple[np.ndarray, list[np.ndarray]]:
        """Anomaly models: raw scores (n,) float32 and one patch-distance map per image (the whole
        image's (H', W'), or its tiles' stitched over the image; ignored cells 0), as the library's
        `PatchDetector.score`: the tiles streamed `batch_size` at a time, the score the largest
        distance of a cell that may be scored."""
        return self.score_all(images, batch_size).results()

    def score_all(self, images: Sequence[np.ndarray], batch_size: int = 32) -> ImageMaps:
        """Anomaly models: the images' inputs scored (tiling.ImageMaps: `.results()` as `score`, and
        `.embeddings()` when the model outputs its inputs' mean features, else None)."""
        collected = ImageMaps(images)
        pending: list[tuple[int, Any]] = []

        def run() -> None:
            outputs = self.run_all(np.stack([item.pixels for _, item in pending]))
            maps = np.asarray(outputs[1], dtype=np.float32)
            pooled = np.asarray(outputs[2], dtype=np.float32) if len(outputs) > 2 else [None] * len(pending)
            for (i, item), patch_map, embedding in zip(pending, maps, pooled):
                collected.add(i, item, patch_map, embedding)
            pending.clear()

        for i, image in enumerate(images):
            for item in model_inputs(image, self.preprocessing, self.regions.mask(*image.shape[:2])):
                pending.append((i, item))
                if len(pending) >= batch_size:
                    run()
        if pending:
            run()
        return collected

    def rows(self, images: Sequence[np.ndarray], ok_classes: Sequence[str] | None = None,
             threshold: float | None = None, batch_size: int = 32) -> list[dict[str, Any]]:
        """One result dict per RGB image, as `inspector predict --json` (OK classes and threshold:
        classifiers, default those in labels.json)."""
        return guard_rows(self.outputs.rows(self, images, ok_classes, threshold, batch_size), images)


def _onnxruntime_runner(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})


def _openvino_runner(path: Path, threads: int):
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                          "PERFORMANCE_HINT": "LATENCY",
                                                          "INFERENCE_PRECISION_HINT": "f32"})

    def run_all(batch: np.ndarray) -> list:
        result = compiled(batch)
        return [result[i] for i in range(len(compiled.outputs))]

    return run_all


def collect_images(inputs: Iterable[str | os.PathLike]) -> tuple[list[Path], list[dict[str, str]]]:
    """Image files of files and folders (folders: recursively, symbolic links followed with loop
    protection, each file once, hidden entries and OS litter left out, sorted); a missing path, a
    broken link and a folder that cannot be opened are listed in the second list as {"path", "reason"}."""
    paths: list[Path] = []
    skipped: list[dict[str, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files, left_out = walk_files(path)
            masks = {p for p in files if _in_mask_folder(p, path)}  # an MVTec-style ground_truth/: not parts
            paths += sorted(p for p in files if is_image_path(p) and p not in masks)
            skipped += [{"path": str(p), "reason": reason} for p, reason in left_out]
            skipped += [{"path": str(p), "reason": "a defect mask (in a mask folder such as ground_truth/), "
                                                  "not a photo of a part"} for p in sorted(masks)]
        elif path.is_file():
            paths.append(path)
        else:
            skipped.append({"path": str(item), "reason": broken_link_reason(path) or "file not found"})
    return paths, skipped


def _in_mask_folder(path: Path, top: Path) -> bool:
    return any(is_mask_folder(part) for part in path.relative_to(top).parts[:-1])


def read_images(paths: Sequence[Path], bit_depth: int | None = None
                ) -> tuple[list[np.ndarray], list[Path], list[dict[str, str]]]:
    """(RGB arrays, the paths they came from, {"path", "reason"} of the unreadable ones); 16-bit images
    decoded with the model's camera `bit_depth` (preprocessing.json's; see images.load_image)."""
    images, kept, skipped = [], [], []
    for path in paths:
        try:
            images.append(to_rgb_array(load_image(path, bit_depth=bit_depth)))
            kept.append(path)
        except ImageLoadError as exc:
            skipped.append({"path": str(path), "reason": str(exc)})
    return images, kept, skipped


def predict_paths(bundle: Bundle, inputs: Iterable[str | os.PathLike], ok_classes: Sequence[str] | None = None,
                  threshold: float | None = None, batch_size: int = 32) -> dict[str, Any]:
    """Decode, resize and predict every image of `inputs` (files or folders); unreadable files are
    listed under `skipped`. The dict `predict.py --json` prints:
    {"bundle", <the outputs' header fields>, "predictions": [{"path", **row}], "skipped"}."""
    paths, missing = collect_images(inputs)
    images, kept, unreadable = read_images(paths, bundle.preprocessing.get("bit_depth"))
    rows = bundle.rows(images, ok_classes, threshold, batch_size)
    return {"bundle": str(bundle.folder), **bundle.outputs.header(),
            "predictions": [{"path": str(p), **r} for p, r in zip(kept, rows)], "skipped": missing + unreadable}
