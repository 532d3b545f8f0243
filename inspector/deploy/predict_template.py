#!/usr/bin/env python3
"""Predict with an exported Defect Inspector bundle. Needs only onnxruntime (or openvino), numpy, pillow.

    python predict.py IMAGE_OR_FOLDER... [--json] [--ok-classes ok,good] [--threshold 0.5]   (classifier)
    python predict.py IMAGE_OR_FOLDER... [--json] [--target-frr 0.05]                          (anomaly)

With --json the last stdout line is one JSON object shaped like `inspector predict RUN --json`:
classifier: {"predictions": [{"path", "label", "confidence", "probabilities", ["verdict", "defect_probability"]}],
             "classes": [...], "skipped": [...]};
anomaly:    {"predictions": [{"path", "score", "raw_score", "verdict"}], "task": "anomaly", "threshold",
             "target_frr", "skipped": [...]}; score is 0..1 and exactly 0.5 at the threshold.

How an image becomes the model input (this is what makes the bundle agree with the training app):
1. decoding: the app's own loader (EXIF orientation, transparency onto white, 16-bit scaled by the
   bit depth it really uses), copied into this file below;
2. resizing to the model's square input with the resize mode in preprocessing.json, reproducing
   OpenCV's `cv2.resize` (area averaging to shrink, bicubic to enlarge) in numpy;
3. everything else (normalisation, the 8 symmetric views, pooling, the head, softmax; for anomaly
   models the patch features and their distances to the good parts' memory bank) is inside
   model.onnx, whose input is the resized uint8 RGB image, shape (batch, size, size, 3). An anomaly
   model's readable score and verdict come from its raw score and the calibration in labels.json
   (the good parts' out-of-sample scores), so --target-frr moves the threshold without re-export.
"""
# This file is inspector/deploy/predict_template.py; `inspector export` copies it into a bundle as
# predict.py and inlines inspector/data/images.py and inspector/tasks/anomaly/calibration.py at the markers.
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
MODEL_FILE, OPENVINO_FILE = "model.onnx", "model.xml"
PREPROCESSING_FILE, LABELS_FILE = "preprocessing.json", "labels.json"

# >>> IMAGE LOADER (inlined at export) <<<

if "load_image" not in globals():  # running from the source tree, not from a bundle
    from inspector.data.images import IMAGE_EXTENSIONS, ImageLoadError, load_image, to_rgb_array  # noqa: F401

# >>> SCORE CALIBRATION (inlined at export) <<<

if "calibrate" not in globals():  # running from the source tree, not from a bundle
    from inspector.tasks.anomaly.calibration import InspectorError, calibrate  # noqa: F401


# ---------------------------------------------------------------------------------------------
# cv2.resize for uint8 images, reproduced in numpy down to OpenCV's own arithmetic (fixed-point
# bicubic / bilinear tables, float32 area sums, its rounding), so that the bundle sees the very
# pixels the training app saw: a one-grey-level difference moves probabilities by up to 1e-2.
# ---------------------------------------------------------------------------------------------
_COEF_SCALE = 2048  # OpenCV INTER_RESIZE_COEF_SCALE
_F32 = np.float32


def _area_taps(src: int, dst: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's computeResizeAreaTab: source index and float32 weight of every tap, per output."""
    taps: list[list[tuple[int, float]]] = []
    for dx in range(dst):
        fsx1 = dx * scale
        fsx2 = fsx1 + scale
        cell = min(scale, src - fsx1)
        sx2 = min(math.floor(fsx2), src - 1)
        sx1 = min(math.ceil(fsx1), sx2)
        row = []
        if sx1 - fsx1 > 1e-3:
            row.append((sx1 - 1, (sx1 - fsx1) / cell))
        row += [(sx, 1.0 / cell) for sx in range(sx1, sx2)]
        if fsx2 - sx2 > 1e-3:
            row.append((sx2, min(min(fsx2 - sx2, 1.0), cell) / cell))
        taps.append(row)
    width = max(len(r) for r in taps)
    index = np.zeros((dst, width), dtype=np.int64)
    weight = np.zeros((dst, width), dtype=_F32)
    for dx, row in enumerate(taps):
        for k, (sx, w) in enumerate(row):
            index[dx, k], weight[dx, k] = sx, w
    return index, weight


def _cubic_coefficients(x: np.ndarray) -> np.ndarray:
    a, one = _F32(-0.75), _F32(1)
    c0 = ((a * (x + one) - 5 * a) * (x + one) + 8 * a) * (x + one) - 4 * a
    c1 = ((a + 2) * x - (a + 3)) * x * x + one
    c2 = ((a + 2) * (one - x) - (a + 3)) * (one - x) * (one - x) + one
    return np.stack([c0, c1, c2, one - c0 - c1 - c2], axis=1)


def _fixed_taps(src: int, dst: int, scale: float, inv_scale: float, method: str) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's interpolation tables for one axis, as 11-bit fixed-point coefficients:
    'linear', or 'area' (the INTER_AREA variant OpenCV uses when an axis is enlarged)."""
    dx = np.arange(dst)
    if method == "area":
        sx = np.floor(dx * scale).astype(np.int64)
        fx = ((dx + 1) - (sx + 1) * inv_scale).astype(_F32)
        fx = np.where(fx <= 0, _F32(0), fx - np.floor(fx)).astype(_F32)
    else:
        f = ((dx + 0.5) * scale - 0.5).astype(_F32)
        sx = np.floor(f).astype(np.int64)
        fx = (f - sx).astype(_F32)
    low, high = sx < 0, sx >= src - 1  # out-of-range taps collapse onto the edge pixel
    fx = np.where(low | high, _F32(0), fx).astype(_F32)
    sx = np.where(low, 0, np.where(high, src - 1, sx))
    coeffs = np.stack([_F32(1) - fx, fx], axis=1)
    index = np.clip(sx[:, None] + np.arange(2), 0, src - 1)
    return index, np.rint(coeffs * _F32(_COEF_SCALE)).astype(np.int64)


def _resize_cubic(image: np.ndarray, width: int, height: int, sx: float, sy: float) -> np.ndarray:
    """OpenCV 5's 8-bit bicubic: float32 coefficients and sums (measured bit-exact here)."""
    def taps(src: int, dst: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
        f = ((np.arange(dst) + 0.5) * scale - 0.5).astype(_F32)
        first = np.floor(f).astype(np.int64)
        coeffs = _cubic_coefficients((f - first).astype(_F32))
        return np.clip(first[:, None] - 1 + np.arange(4), 0, src - 1), coeffs

    xi, xc = taps(image.shape[1], width, sx)
    yi, yc = taps(image.shape[0], height, sy)
    pixels = image.astype(_F32)
    rows = pixels[:, xi[:, 0]] * xc[:, 0, None]
    for k in range(1, 4):
        rows = (rows + pixels[:, xi[:, k]] * xc[:, k, None]).astype(_F32)
    out = rows[yi[:, 0]] * yc[:, 0, None, None]
    for k in range(1, 4):
        out = (out + rows[yi[:, k]] * yc[:, k, None, None]).astype(_F32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _resize_fixed(image: np.ndarray, width: int, height: int, method: str, sx: float, sy: float,
                  ix: float, iy: float) -> np.ndarray:
    """Bilinear and INTER_AREA-when-enlarging: 11-bit fixed point, OpenCV's SIMD vertical pass."""
    xi, xc = _fixed_taps(image.shape[1], width, sx, ix, method)
    yi, yc = _fixed_taps(image.shape[0], height, sy, iy, method)
    rows = np.einsum("hwkc,wk->hwc", image[:, xi].astype(np.int64), xc)  # horizontal pass, exact ints
    b0, b1 = yc[:, 0, None, None], yc[:, 1, None, None]
    out = ((((rows[yi[:, 0]] >> 4) * b0) >> 16) + (((rows[yi[:, 1]] >> 4) * b1) >> 16) + 2) >> 2
    return np.clip(out, 0, 255).astype(np.uint8)


def _resize_area(image: np.ndarray, width: int, height: int, sx: float, sy: float) -> np.ndarray:
    src_h, src_w = image.shape[:2]
    ix, iy = round(sx), round(sy)
    if abs(sx - ix) < 2.2e-16 and abs(sy - iy) < 2.2e-16:  # whole-number factors: OpenCV's fast path
        block = image[:height * iy, :width * ix].astype(np.int64)
        total = block.reshape(height, iy, width, ix, 3).sum(axis=(1, 3))
        if ix == 2 and iy == 2:
            return ((total + 2) >> 2).astype(np.uint8)
        return np.clip(np.rint(total.astype(_F32) * _F32(1.0 / (ix * iy))), 0, 255).astype(np.uint8)
    xi, xw = _area_taps(src_w, width, sx)
    yi, yw = _area_taps(src_h, height, sy)
    pixels = image.astype(_F32)
    buf = np.zeros((src_h, width, 3), dtype=_F32)
    for k in range(xi.shape[1]):  # float32, tap by tap, as resizeArea_ accumulates
        buf = (buf + pixels[:, xi[:, k]] * xw[:, k, None]).astype(_F32)
    out = buf[yi[:, 0]] * yw[:, 0, None, None]
    for k in range(1, yi.shape[1]):
        out = (out + buf[yi[:, k]] * yw[:, k, None, None]).astype(_F32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def cv2_resize(image: np.ndarray, width: int, height: int, interpolation: str, area: bool) -> np.ndarray:
    """`cv2.resize(image, (width, height), interpolation=INTER_AREA if area else ...)`, uint8 RGB."""
    src_h, src_w = image.shape[:2]
    if (src_h, src_w) == (height, width):
        return image
    ix, iy = width / src_w, height / src_h
    sx, sy = 1.0 / ix, 1.0 / iy  # as OpenCV computes them (a whole multiple can fall either side)
    if area and sx >= 1 and sy >= 1:
        return _resize_area(image, width, height, sx, sy)
    if interpolation == "nearest" and not area:
        rows = np.minimum(np.floor(np.arange(height) * sy).astype(np.int64), src_h - 1)
        cols = np.minimum(np.floor(np.arange(width) * sx).astype(np.int64), src_w - 1)
        return np.ascontiguousarray(image[rows][:, cols])
    if interpolation == "bicubic" and not area:
        return _resize_cubic(image, width, height, sx, sy)
    return _resize_fixed(image, width, height, "area" if area else "linear", sx, sy, ix, iy)


def fit_to_input(image: np.ndarray, prep: dict) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> (size, size, 3), as inspector.augment's albumentations resize does."""
    size, mode, interpolation = int(prep["image_size"]), prep["resize_mode"], prep["interpolation"]
    antialias = bool(prep.get("antialias", False))
    h, w = image.shape[:2]
    if mode == "stretch":  # A.Resize: area averaging whenever either side shrinks
        return cv2_resize(image, size, size, interpolation, antialias and (size < h or size < w))
    scale = size / (max(h, w) if mode == "letterbox" else min(h, w))  # Longest/SmallestMaxSize
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    image = cv2_resize(image, new_w, new_h, interpolation, antialias and scale < 1.0)
    if mode == "crop":  # A.CenterCrop
        top, left = (new_h - size) // 2, (new_w - size) // 2
        return np.ascontiguousarray(image[top:top + size, left:left + size])
    canvas = np.empty((size, size, 3), dtype=np.uint8)  # A.PadIfNeeded, centred, in the mean colour
    canvas[:] = np.array(prep["pad_value"], dtype=np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[top:top + new_h, left:left + new_w] = image
    return canvas


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------
class Bundle:
    """An exported model folder: model.onnx (or OpenVINO's model.xml) + preprocessing.json + labels.json.

    `run(batch)` gives the model's first output; `run_all(batch)` all of them."""

    def __init__(self, folder=HERE, threads: int | None = None, target_frr: float | None = None) -> None:
        self.folder = Path(folder)
        self.preprocessing = json.loads((self.folder / PREPROCESSING_FILE).read_text(encoding="utf-8"))
        self.labels = json.loads((self.folder / LABELS_FILE).read_text(encoding="utf-8"))
        self.classes = list(self.labels["classes"])
        self.task = self.labels.get("task", "classification")
        if self.task == "anomaly":  # the threshold for the false-reject target, from the good parts' scores
            self.target_frr = float(self.labels["target_frr"] if target_frr is None else target_frr)
            self.scale = calibrate(np.asarray(self.labels["calibration_scores"], dtype=np.float64), self.target_frr)
        threads = threads or int(os.environ.get("INSPECTOR_THREADS", 0)) or (os.cpu_count() or 1)
        if (self.folder / OPENVINO_FILE).is_file():
            import openvino as ov

            self.backend = "openvino"
            compiled = ov.Core().compile_model(str(self.folder / OPENVINO_FILE), "CPU",
                                               {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                                "INFERENCE_PRECISION_HINT": "f32"})

            def run_all(batch):
                result = compiled(batch)
                return [result[i] for i in range(len(compiled.outputs))]

            self.run_all = run_all
        else:
            import onnxruntime as ort

            self.backend = "onnxruntime"
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(str(self.folder / MODEL_FILE), options, providers=["CPUExecutionProvider"])
            name = session.get_inputs()[0].name
            self.run_all = lambda batch: session.run(None, {name: batch})
        self.run = lambda batch: self.run_all(batch)[0]

    def prepare(self, image: np.ndarray) -> np.ndarray:
        return fit_to_input(image, self.preprocessing)

    def predict_proba(self, images, batch_size: int = 32) -> np.ndarray:
        """Class probabilities (n, classes) for RGB uint8 arrays of any size."""
        out = []
        for first in range(0, len(images), batch_size):
            batch = np.stack([self.prepare(im) for im in images[first:first + batch_size]])
            out.append(np.asarray(self.run(batch), dtype=np.float32))
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), dtype=np.float32)

    def score(self, images, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """Anomaly models: raw scores (n,) and patch-distance maps (n, H', W') of RGB uint8 arrays."""
        raw, maps = [], []
        for first in range(0, len(images), batch_size):
            batch = np.stack([self.prepare(im) for im in images[first:first + batch_size]])
            scores, distances = self.run_all(batch)[:2]
            raw.append(np.asarray(scores, dtype=np.float32))
            maps.append(np.asarray(distances, dtype=np.float32))
        if not raw:
            return np.zeros(0, dtype=np.float32), np.zeros((0, 0, 0), dtype=np.float32)
        return np.concatenate(raw), np.concatenate(maps)

    def anomaly_rows(self, raw: np.ndarray) -> list[dict]:
        """One {"score", "raw_score", "verdict"} per raw score, as `inspector predict --json` on an anomaly run."""
        return [{"score": float(self.scale.readable(r)), "raw_score": float(r),
                 "verdict": "NG" if r > self.scale.threshold else "OK"} for r in raw]  # as AnomalyPredictor

    def rows(self, probabilities: np.ndarray, ok_classes=None, threshold: float | None = None) -> list[dict]:
        """One result dict per image, in the shape `inspector predict --json` uses."""
        ok_classes = self.labels.get("ok_classes") or [] if ok_classes is None else ok_classes
        threshold = self.labels.get("threshold", 0.5) if threshold is None else threshold
        rows = []
        for row in probabilities:
            label = self.classes[int(np.argmax(row))]
            probs = {c: float(p) for c, p in zip(self.classes, row)}
            result = {"label": label, "confidence": probs[label], "probabilities": probs}
            if ok_classes:
                p_defect = min(1.0, max(0.0, 1.0 - sum(p for c, p in probs.items() if c in set(ok_classes))))
                result.update(verdict="OK" if p_defect < threshold else "NG", defect_probability=p_defect)
            rows.append(result)
        return rows


def collect_images(inputs) -> tuple[list[Path], list[dict]]:
    paths, skipped = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            paths += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                            and not any(part.startswith(".") for part in p.relative_to(path).parts))
        elif path.is_file():
            paths.append(path)
        else:
            skipped.append({"path": item, "reason": "file not found"})
    return paths, skipped


def predict_paths(bundle: Bundle, inputs, ok_classes=None, threshold=None, batch_size: int = 32) -> dict:
    """Decode, resize and predict every image; unreadable files are listed under `skipped`."""
    paths, skipped = collect_images(inputs)
    images, kept = [], []
    for path in paths:
        try:
            images.append(to_rgb_array(load_image(path)))
            kept.append(path)
        except ImageLoadError as exc:
            skipped.append({"path": str(path), "reason": str(exc)})
    if bundle.task == "anomaly":
        rows = bundle.anomaly_rows(bundle.score(images, batch_size)[0])
        extra = {"task": "anomaly", "threshold": bundle.scale.threshold, "target_frr": bundle.target_frr}
    else:
        rows = bundle.rows(bundle.predict_proba(images, batch_size), ok_classes, threshold)
        extra = {"classes": bundle.classes}
    return {"bundle": str(bundle.folder), **extra,
            "predictions": [{"path": str(p), **r} for p, r in zip(kept, rows)], "skipped": skipped}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Classify images, or score them for anomalies, with this "
                                     "exported model.")
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
    parser.add_argument("--ok-classes", default=None,
                        help="comma-separated classes that count as OK (default: those in labels.json)")
    parser.add_argument("--threshold", type=float, default=None, help="NG when P(defect) >= this")
    parser.add_argument("--target-frr", type=float, default=None,
                        help="anomaly models: reject at most this share of good parts (default: as trained)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    try:
        bundle = Bundle(target_frr=args.target_frr)
    except InspectorError as exc:  # a target false-reject rate outside (0, 1)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if bundle.task == "anomaly" and (args.ok_classes or args.threshold is not None):
        print("error: --ok-classes and --threshold go with a classifier; this anomaly model sets its threshold "
              "with --target-frr.", file=sys.stderr)
        return 2
    if bundle.task != "anomaly" and args.target_frr is not None:
        print("error: --target-frr goes with an anomaly model; this model is a classifier.", file=sys.stderr)
        return 2
    ok_classes = args.ok_classes.split(",") if args.ok_classes else None
    unknown = [c for c in ok_classes or [] if c not in bundle.classes]
    if unknown:
        print(f"error: --ok-classes names unknown classes: {', '.join(unknown)}. "
              f"The model knows: {', '.join(bundle.classes)}.", file=sys.stderr)
        return 2
    result = predict_paths(bundle, args.images, ok_classes, args.threshold, args.batch_size)
    for item in result["skipped"]:
        print(f"skipped {item['path']}: {item['reason']}", file=sys.stderr)
    if not result["predictions"]:
        reasons = "; ".join(f"{item['path']}: {item['reason']}" for item in result["skipped"][:3])
        print(f"error: no readable image to predict ({reasons or 'no image given'}; paths are relative to "
              f"{os.getcwd()}).", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        for row in result["predictions"]:
            if "raw_score" in row:
                print(f"{row['path']}\t{row['verdict']}, anomaly {row['score']:.2f}")
                continue
            extra = f"  {row['verdict']}" if "verdict" in row else ""
            print(f"{row['path']}\t{row['label']}\t{row['confidence']:.3f}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
