"""Defect Inspector's torch-free runtime: everything a deployed model needs, and nothing else.

It imports only the standard library, numpy and Pillow (onnxruntime or openvino when a bundle is
opened) and nothing of inspector outside itself, because `inspector export` copies this package
unchanged into every bundle as `inspector_runtime/`, beside model.onnx and a small predict.py.
The library, the service and the app use the same code: one decoder (images.py), one resize
(resize.py), one calibration (calibration.py), one result-row builder (rows.py).

Python API (in a bundle: `import predict`, whose names are these):

    bundle = load_bundle("path/to/bundle")            # Bundle: onnxruntime, or OpenVINO's model.xml
    rows = predict(bundle, ["a.png", rgb_uint8_array])  # one dict per image, as `inspector predict --json`
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from .bundle import Bundle, collect_images, predict_paths, read_images
from .calibration import ScoreScale, calibrate
from .cli import main
from .errors import ImageLoadError, ImageTooLargeError, InspectorError
from .images import IMAGE_EXTENSIONS, MAX_IMAGE_PIXELS, load_image, max_pixels, to_rgb_array
from .outputs import READERS, output_reader
from .resize import fit_to_input
from .rows import probability_rows, score_rows

__all__ = ["Bundle", "IMAGE_EXTENSIONS", "ImageLoadError", "ImageTooLargeError", "InspectorError", "MAX_IMAGE_PIXELS",
           "READERS", "max_pixels",
           "ScoreScale", "calibrate", "collect_images", "fit_to_input", "load_bundle", "load_image", "main",
           "output_reader", "predict", "predict_paths", "probability_rows", "read_images", "score_rows",
           "to_rgb_array"]


def load_bundle(folder: str | os.PathLike, threads: int | None = None, target_frr: float | None = None) -> Bundle:
    """Open an exported bundle folder (see Bundle). Raises InspectorError if it is none."""
    return Bundle(folder, threads=threads, target_frr=target_frr)


def predict(bundle: Bundle | str | os.PathLike, images: Sequence[str | os.PathLike | bytes | np.ndarray],
            ok_classes: Sequence[str] | None = None, threshold: float | None = None,
            batch_size: int = 32) -> list[dict[str, Any]]:
    """One result dict per image, in order: classifiers {"label", "confidence", "probabilities"}
    (+ "verdict", "defect_probability" with OK classes; default those stored at export), anomaly
    models {"score", "raw_score", "verdict"}.

    bundle: a Bundle or a bundle folder. images: file paths, encoded bytes or RGB uint8 arrays
    (H, W, 3) of any size. Raises ImageLoadError (naming the file) for an unreadable image.
    """
    bundle = bundle if isinstance(bundle, Bundle) else Bundle(bundle)
    arrays = []
    for image in images:
        if isinstance(image, np.ndarray):
            arrays.append(image)
            continue
        try:
            arrays.append(to_rgb_array(load_image(image, bit_depth=bundle.preprocessing.get("bit_depth"))))
        except ImageLoadError as exc:
            name = "image bytes" if isinstance(image, (bytes, bytearray, memoryview)) else str(image)
            raise ImageLoadError(f"{name}: {exc}") from None
    return bundle.rows(arrays, ok_classes, threshold, batch_size)
