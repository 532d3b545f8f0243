"""The one resize: an RGB uint8 image of any size -> the model's square uint8 input, in numpy.

The training pipeline (inspector.augment), the app, the service and the exported bundle all call
`fit_to_input`, so they feed a model the very same pixels (a one-grey-level difference moves a
classifier's probabilities by up to 1e-2). The arithmetic is OpenCV's `cv2.resize` for 8-bit
images (imgproc/src/resize.cpp): fixed-point bilinear tables with its SIMD vertical pass, float32
area sums for INTER_AREA, float32 bicubic sums as the IPP build of OpenCV computes them. It gives
cv2's pixels exactly for area averaging, bilinear and nearest; bicubic differs from cv2 by one
grey level on about 1e-3 of the values (up to 1.6e-2 on 48 x 16384 strips), because cv2 hands
bicubic to Intel IPP, whose arithmetic depends on the CPU (measured on an AVX-512 machine). The
numpy code gives the same pixels on every machine, which is why everything uses it.

Resize modes (`preprocessing.json` / `inspector.augment.Preprocessing`):
    stretch    the whole image to size x size (albumentations' A.Resize)
    letterbox  the long side to size, centred on a size x size canvas in the pad colour
               (A.LongestMaxSize + A.PadIfNeeded)
    crop       the short side to size, the centre size x size cut out (A.SmallestMaxSize + A.CenterCrop)
With `antialias`, a shrinking resize averages pixel areas (INTER_AREA) instead of interpolating.
"""
from __future__ import annotations

from typing import Any

import numpy as np

RESIZE_MODES = ("stretch", "letterbox", "crop")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
_COEF_SCALE = 2048  # OpenCV's INTER_RESIZE_COEF_SCALE: 11-bit fixed-point coefficients
_F32 = np.float32


def _area_taps(src: int, scale: float, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's computeResizeAreaTab (in float64, as its doubles), for the output positions
    `outputs`: source index and float32 weight of each tap, (n, taps) each, in source order. An
    output reads a partial first cell, whole cells, a partial last cell; unused taps are (0, 0.0):
    adding 0.0 leaves a float sum as it is."""
    fsx1 = outputs.astype(np.float64) * scale
    fsx2 = fsx1 + scale
    cell = np.minimum(scale, src - fsx1)
    sx2 = np.minimum(np.floor(fsx2), src - 1).astype(np.int64)
    sx1 = np.minimum(np.ceil(fsx1).astype(np.int64), sx2)
    first = (sx1 - fsx1) > 1e-3
    last = (fsx2 - sx2) > 1e-3
    whole = sx2 - sx1
    k = np.arange(int((first + whole + last).max()))[None, :]
    inner = k - first[:, None]  # position among the whole cells
    is_first = (k == 0) & first[:, None]
    is_whole = (inner >= 0) & (inner < whole[:, None])
    is_last = (inner == whole[:, None]) & last[:, None]
    index = np.where(is_first, sx1[:, None] - 1, np.where(is_whole, sx1[:, None] + inner,
                                                          np.where(is_last, sx2[:, None], 0)))
    first_w = ((sx1 - fsx1) / cell)[:, None]
    last_w = (np.minimum(np.minimum(fsx2 - sx2, 1.0), cell) / cell)[:, None]
    weight = np.where(is_first, first_w, np.where(is_whole, (1.0 / cell)[:, None], np.where(is_last, last_w, 0.0)))
    return index, weight.astype(_F32)


def _cubic_coefficients(x: np.ndarray) -> np.ndarray:
    """The four bicubic weights (A = -0.75, as OpenCV) of float32 fractions x, (n,) -> (n, 4)."""
    a, one = _F32(-0.75), _F32(1)
    c0 = ((a * (x + one) - 5 * a) * (x + one) + 8 * a) * (x + one) - 4 * a
    c1 = ((a + 2) * x - (a + 3)) * x * x + one
    c2 = ((a + 2) * (one - x) - (a + 3)) * (one - x) * (one - x) + one
    return np.stack([c0, c1, c2, one - c0 - c1 - c2], axis=1)


def _cubic_taps(src: int, scale: float, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = ((outputs + 0.5) * scale - 0.5).astype(_F32)
    first = np.floor(f).astype(np.int64)
    return np.clip(first[:, None] - 1 + np.arange(4), 0, src - 1), _cubic_coefficients((f - first).astype(_F32))


def _fixed_taps(src: int, scale: float, inv_scale: float, outputs: np.ndarray, area: bool,
                horizontal: bool) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's two-tap tables for one axis as 11-bit fixed-point coefficients, (n, 2) each:
    bilinear, or with `area` the INTER_AREA variant OpenCV uses on an axis that is enlarged.
    Only the horizontal axis moves an out-of-range tap onto the edge with weight 0; vertically
    OpenCV keeps the fraction and repeats the edge row (resizeGeneric_)."""
    if area:
        sx = np.floor(outputs * scale).astype(np.int64)
        fx = ((outputs + 1) - (sx + 1) * inv_scale).astype(_F32)
        fx = np.where(fx <= 0, _F32(0), fx - np.floor(fx)).astype(_F32)
    else:
        f = ((outputs + 0.5) * scale - 0.5).astype(_F32)
        sx = np.floor(f).astype(np.int64)
        fx = (f - sx).astype(_F32)
    if horizontal:
        low, high = sx < 0, sx >= src - 1
        fx = np.where(low | high, _F32(0), fx).astype(_F32)
        sx = np.where(low, 0, np.where(high, src - 1, sx))
    coeffs = np.stack([_F32(1) - fx, fx], axis=1)
    index = np.clip(sx[:, None] + np.arange(2), 0, src - 1)
    return index, np.rint(coeffs * _F32(_COEF_SCALE)).astype(np.int64)


def _channels(index: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel taps (n, k) -> per-value taps (n * 3, k) of an RGB row flattened to (width * 3,)
    (np.take on the flat layout is ~10x faster than fancy indexing of (H, W, 3))."""
    columns = (index[:, None, :] * 3 + np.arange(3)[None, :, None]).reshape(-1, index.shape[1])
    return columns, np.repeat(weight, 3, axis=0)


def _source_rows(image: np.ndarray, yi: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(the image as (H, W * 3) rows, the rows the vertical taps read or None for all, the taps
    renumbered into them): the horizontal pass runs on these rows only (each row is independent,
    so the result is the same; a centre crop or a shrinking bicubic reads a fraction of them)."""
    flat = image.reshape(image.shape[0], -1)
    used, inverse = np.unique(yi, return_inverse=True)
    if len(used) == image.shape[0]:
        return flat, None, yi
    return flat, used, inverse.reshape(yi.shape)


def _vertical_f32(line: np.ndarray, yi: np.ndarray, yw: np.ndarray) -> np.ndarray:
    """Float32 vertical pass, tap by tap: (rows, n * 3) -> (len(yi), n * 3)."""
    out = np.take(line, yi[:, 0], axis=0) * yw[:, 0, None]
    for k in range(1, yi.shape[1]):
        out += np.take(line, yi[:, k], axis=0) * yw[:, k, None]
    return out


def _horizontal_f32(flat: np.ndarray, used: np.ndarray | None, xi: np.ndarray, xw: np.ndarray,
                    rows: int = 128) -> np.ndarray:
    """Float32 horizontal pass of the `used` rows of `flat` (None: all), tap by tap in source order:
    (H, W * 3) uint8 -> (rows used, n * 3). Runs `rows` rows at a time in reused buffers, so each
    tap's work stays in the CPU cache (1.4-2x faster than whole-image passes; the same sums)."""
    count = flat.shape[0] if used is None else len(used)
    out = np.empty((count, xi.shape[0]), dtype=_F32)
    taken = np.empty((min(rows, count), xi.shape[0]), dtype=np.uint8)
    term = np.empty(taken.shape, dtype=_F32)
    for first in range(0, count, rows):
        part = flat[first:first + rows] if used is None else np.take(flat, used[first:first + rows], axis=0)
        line, got, product = out[first:first + rows], taken[:len(part)], term[:len(part)]
        np.take(part, xi[:, 0], axis=1, out=got)
        line[...] = got
        line *= xw[:, 0]  # 0.0 + the first tap, as OpenCV's sums start
        for k in range(1, xi.shape[1]):
            np.take(part, xi[:, k], axis=1, out=got)
            product[...] = got
            product *= xw[:, k]
            line += product
    return out


def _resize_cubic(image: np.ndarray, sx: float, sy: float, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """8-bit bicubic as OpenCV's IPP path: float32 coefficients, float32 sums tap by tap."""
    xi, xc = _channels(*_cubic_taps(image.shape[1], sx, cols))
    yi, yc = _cubic_taps(image.shape[0], sy, rows)
    flat, used, yi = _source_rows(image, yi)
    out = _vertical_f32(_horizontal_f32(flat, used, xi, xc), yi, yc)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(len(rows), len(cols), 3)


def _resize_fixed(image: np.ndarray, area: bool, sx: float, sy: float, ix: float, iy: float,
                  rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear and INTER_AREA-when-enlarging: 11-bit fixed point, OpenCV's SIMD vertical pass
    (int32 is wide enough: 255 * 2048 * 2 horizontally, 32640 * 2048 vertically)."""
    xi, xc = _channels(*_fixed_taps(image.shape[1], sx, ix, cols, area, horizontal=True))
    yi, yc = _fixed_taps(image.shape[0], sy, iy, rows, area, horizontal=False)
    flat, used, yi = _source_rows(image, yi)
    source = flat if used is None else np.take(flat, used, axis=0)
    xc = xc.astype(np.int32)
    line = np.take(source, xi[:, 0], axis=1) * xc[:, 0] + np.take(source, xi[:, 1], axis=1) * xc[:, 1]
    line >>= 4
    b0, b1 = yc[:, 0, None].astype(np.int32), yc[:, 1, None].astype(np.int32)
    out = ((np.take(line, yi[:, 0], axis=0) * b0) >> 16) + ((np.take(line, yi[:, 1], axis=0) * b1) >> 16)
    out = (out + 2) >> 2
    return np.clip(out, 0, 255).astype(np.uint8).reshape(len(rows), len(cols), 3)


def _resize_area(image: np.ndarray, sx: float, sy: float, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """INTER_AREA shrinking: OpenCV's resizeAreaFast_ for whole-number factors, else resizeArea_
    (float32 weights, the horizontal sum then the vertical one, each tap by tap)."""
    ix, iy = round(sx), round(sy)
    if abs(sx - ix) < 2.2e-16 and abs(sy - iy) < 2.2e-16:  # whole-number factors: OpenCV's fast path
        top, left = int(rows[0]) * iy, int(cols[0]) * ix
        block = image[top:top + len(rows) * iy, left:left + len(cols) * ix].astype(np.int32)
        total = block.reshape(len(rows), iy, len(cols), ix, 3).sum(axis=(1, 3))
        if ix == 2 and iy == 2:
            return ((total + 2) >> 2).astype(np.uint8)
        return np.clip(np.rint(total.astype(_F32) * _F32(1.0 / (ix * iy))), 0, 255).astype(np.uint8)
    xi, xw = _channels(*_area_taps(image.shape[1], sx, cols))
    yi, yw = _area_taps(image.shape[0], sy, rows)
    flat, used, yi = _source_rows(image, yi)
    out = _vertical_f32(_horizontal_f32(flat, used, xi, xw), yi, yw)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(len(rows), len(cols), 3)


def cv2_resize(image: np.ndarray, width: int, height: int, interpolation: str, area: bool,
               window: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """`cv2.resize(image, (width, height), interpolation=INTER_AREA if area else ...)` of an RGB
    uint8 (H, W, 3) image. `window` (top, left, rows, cols) computes only that part of the result
    (a centre crop need not resize the rest); the default is the whole (height, width, 3)."""
    src_h, src_w = image.shape[:2]
    top, left, n_rows, n_cols = window or (0, 0, height, width)
    if (src_h, src_w) == (height, width):
        return image[top:top + n_rows, left:left + n_cols]
    rows, cols = np.arange(top, top + n_rows), np.arange(left, left + n_cols)
    ix, iy = width / src_w, height / src_h
    sx, sy = 1.0 / ix, 1.0 / iy  # as OpenCV computes them (a whole multiple can fall either side)
    if area and sx >= 1 and sy >= 1:
        return _resize_area(image, sx, sy, rows, cols)
    if interpolation == "nearest" and not area:
        y = np.minimum(np.floor(rows * sy).astype(np.int64), src_h - 1)
        x = np.minimum(np.floor(cols * sx).astype(np.int64), src_w - 1)
        return np.ascontiguousarray(image[y][:, x])
    if interpolation == "bicubic" and not area:
        return _resize_cubic(image, sx, sy, rows, cols)
    return _resize_fixed(image, area, sx, sy, ix, iy, rows, cols)


def fit_to_input(image: np.ndarray, preprocessing: dict[str, Any]) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> the model input (size, size, 3) uint8.

    `preprocessing`: image_size, resize_mode (stretch / letterbox / crop), interpolation (bicubic /
    bilinear / nearest), antialias (area averaging to shrink; absent: False) and, for letterbox,
    pad_value (the RGB padding colour). Raises ValueError for an unknown mode or interpolation.
    """
    size = int(preprocessing["image_size"])
    mode, interpolation = preprocessing["resize_mode"], preprocessing["interpolation"]
    if mode not in RESIZE_MODES or interpolation not in INTERPOLATIONS:
        raise ValueError(f"Unknown resize {mode!r} / interpolation {interpolation!r}.")
    antialias = bool(preprocessing.get("antialias", False))
    image = np.ascontiguousarray(image, dtype=np.uint8)
    h, w = image.shape[:2]
    if mode == "stretch":  # A.Resize: area averaging whenever either side shrinks
        return cv2_resize(image, size, size, interpolation, antialias and (size < h or size < w))
    scale = size / (max(h, w) if mode == "letterbox" else min(h, w))  # Longest/SmallestMaxSize
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    area = antialias and scale < 1.0
    if mode == "crop":  # A.CenterCrop of the resized image: only the centre is computed
        top, left = (new_h - size) // 2, (new_w - size) // 2
        return np.ascontiguousarray(cv2_resize(image, new_w, new_h, interpolation, area, (top, left, size, size)))
    canvas = np.empty((size, size, 3), dtype=np.uint8)  # A.PadIfNeeded, centred, in the pad colour
    canvas[:] = np.asarray(preprocessing["pad_value"], dtype=np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[top:top + new_h, left:left + new_w] = cv2_resize(image, new_w, new_h, interpolation, area)
    return canvas
