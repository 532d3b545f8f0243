"""Tiles: a large image cut into overlapping squares at one pixel scale, so that a defect a few camera
pixels across still spans a feature cell of the backbone (a 16000 x 3000 line-scan strip squeezed to
256 px loses every defect smaller than 60 pixels).

`preprocessing["tiling"]` (absent or None: the whole image is one model input, as `fit_to_input`):

    {"tile": T, "overlap": f}   squares of T x T camera pixels, neighbours overlapping by about the
                                fraction f, each resized to the model's input (image_size); the scale
                                is image_size / T model pixels per camera pixel, the same for every
                                image whose sides are both at least T

An image side shorter than T is covered by one tile of that side (the square shrinks to the short
side, so such an image is enlarged a little more). The tiles of an image are made one at a time from
views of the decoded image (`model_inputs` is a generator): memory stays bounded by one batch of
tiles whatever the image's size.

How tiles combine is the task's: an anomaly model places each tile's patch map back on a grid over
the whole image (`stitch`, overlaps by their maximum), so the score and the map of a tiled image are
those of one large patch map (`ImageMaps`); a classifier averages its tiles' outputs
(`mean_over_inputs`): its head is linear, so the image's logits are those of its tiles' mean features.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from .resize import fit_to_input

DEFAULT_OVERLAP = 0.25  # a defect cut by one tile's edge lies well inside its neighbour


@dataclass(frozen=True)
class ModelInput:
    """One model input made from an image: its pixels (size, size, 3) uint8, the square of the image it
    shows as (top, left, side) in camera pixels (the whole image: (0, 0, 0)), and which of its pixels
    may be scored ((size, size) bool, None: all)."""

    pixels: np.ndarray
    box: tuple[int, int, int]
    valid: np.ndarray | None = None


def tiling_of(preprocessing: dict[str, Any]) -> dict[str, Any] | None:
    """The run's tiling settings, or None for whole-image inputs."""
    tiling = preprocessing.get("tiling")
    return dict(tiling) if tiling else None


def _starts(length: int, side: int, overlap: float) -> list[int]:
    """Evenly spread start positions of squares of `side` covering [0, length), edges included."""
    if length <= side:
        return [0]
    count = math.ceil((length - side) / max(1.0, side * (1.0 - overlap))) + 1
    return [round(i * (length - side) / (count - 1)) for i in range(count)]


def tile_boxes(height: int, width: int, tile: int, overlap: float = DEFAULT_OVERLAP) -> list[tuple[int, int, int]]:
    """The (top, left, side) squares covering a height x width image, row by row. side = min(tile,
    height, width). Raises ValueError for a tile under 8 pixels or an overlap outside [0, 0.9]."""
    if tile < 8:
        raise ValueError(f"A tile must be at least 8 pixels, got {tile}.")
    if not 0.0 <= overlap <= 0.9:
        raise ValueError(f"The tile overlap must be within [0, 0.9], got {overlap}.")
    side = min(int(tile), int(height), int(width))
    return [(top, left, side) for top in _starts(height, side, overlap) for left in _starts(width, side, overlap)]


def _as_input_mask(valid: np.ndarray, preprocessing: dict[str, Any]) -> np.ndarray:
    """A (h, w) bool mask of the image (or of a tile) -> (size, size) bool at the model input, through
    the very resize of the pixels (letterbox padding counts as valid: it was always scored)."""
    grey = np.repeat((valid.astype(np.uint8) * 255)[:, :, None], 3, axis=2)
    resized = fit_to_input(grey, {**preprocessing, "pad_value": [255, 255, 255], "interpolation": "bilinear"})
    return resized[:, :, 0] >= 128


def model_inputs(image: np.ndarray, preprocessing: dict[str, Any], valid: np.ndarray | None = None
                 ) -> Iterator[ModelInput]:
    """The model inputs of one RGB uint8 image (H, W, 3): the whole image, or its tiles one at a time.

    valid: (H, W) bool, True where the image may be scored (regions.Regions.mask); None: everywhere.
    """
    tiling = tiling_of(preprocessing)
    if tiling is None:
        yield ModelInput(fit_to_input(image, preprocessing), (0, 0, 0),
                         None if valid is None else _as_input_mask(valid, preprocessing))
        return
    square = {**preprocessing, "resize_mode": "stretch"}
    height, width = image.shape[:2]
    for top, left, side in tile_boxes(height, width, int(tiling["tile"]), float(tiling.get("overlap", DEFAULT_OVERLAP))):
        crop = image[top:top + side, left:left + side]
        mask = None if valid is None else _as_input_mask(valid[top:top + side, left:left + side], square)
        yield ModelInput(fit_to_input(crop, square), (top, left, side), mask)


def cell_mask(valid: np.ndarray | None, grid: tuple[int, int]) -> np.ndarray | None:
    """A model input's valid pixels (size, size) -> its feature cells (h', w') bool: a cell counts when
    at least half of the pixels it covers may be scored (area average)."""
    if valid is None:
        return None
    image = Image.fromarray(valid.astype(np.float32), mode="F")
    return np.asarray(image.resize((int(grid[1]), int(grid[0])), Image.Resampling.BOX)) >= 0.5


def masked_max(patch_map: np.ndarray, cells: np.ndarray | None) -> float:
    """The largest patch distance among the cells that may be scored (0.0 when none may)."""
    values = patch_map if cells is None else patch_map[cells]
    return float(values.max()) if values.size else 0.0


def stitch(maps: Sequence[np.ndarray], boxes: Sequence[tuple[int, int, int]], image_hw: tuple[int, int],
           cells: Sequence[np.ndarray | None] | None = None) -> np.ndarray:
    """Tile patch maps (each (h', w')) -> one map over the whole image at the tiles' cell size
    ((ceil(H / c), ceil(W / c)) with c = side / h' camera pixels per cell), overlaps by their maximum;
    cells that may not be scored count 0. A whole-image input (box side 0) is returned as it is."""
    if len(maps) == 1 and boxes[0][2] == 0:
        only = np.asarray(maps[0], dtype=np.float32)
        return only if not cells or cells[0] is None else np.where(cells[0], only, 0.0).astype(np.float32)
    height, width = image_hw
    per_cell = boxes[0][2] / maps[0].shape[0]
    canvas = np.zeros((math.ceil(height / per_cell), math.ceil(width / per_cell)), dtype=np.float32)
    for i, (patch_map, (top, left, side)) in enumerate(zip(maps, boxes)):
        patch_map = np.asarray(patch_map, dtype=np.float32)
        if cells and cells[i] is not None:
            patch_map = np.where(cells[i], patch_map, 0.0)
        y, x = round(top / per_cell), round(left / per_cell)
        h = min(patch_map.shape[0], canvas.shape[0] - y)
        w = min(patch_map.shape[1], canvas.shape[1] - x)
        np.maximum(canvas[y:y + h, x:x + w], patch_map[:h, :w], out=canvas[y:y + h, x:x + w])
    return canvas


def combine_tiles(maps: Sequence[np.ndarray], boxes: Sequence[tuple[int, int, int]],
                  cells: Sequence[np.ndarray | None], image_hw: tuple[int, int]) -> tuple[float, np.ndarray]:
    """An image's (raw score, stitched map) from its inputs' patch maps: the score is the largest
    patch distance among the cells that may be scored, over all the tiles (`masked_max`)."""
    raw = max(masked_max(np.asarray(m), c) for m, c in zip(maps, cells))
    return raw, stitch(maps, boxes, image_hw, cells)


class ImageMaps:
    """The patch maps of images' model inputs, collected as they are scored (in any batches), then
    each image's raw score and stitched map (`combine_tiles`): the one bookkeeping of the library's
    detector and of the bundle."""

    def __init__(self, images: Sequence[np.ndarray]) -> None:
        self.image_hw = [tuple(image.shape[:2]) for image in images]
        self.parts: list[list[tuple[np.ndarray, tuple[int, int, int], np.ndarray | None]]] = [[] for _ in images]
        self.pooled: list[list[np.ndarray]] = [[] for _ in images]

    def add(self, index: int, item: ModelInput, patch_map: np.ndarray, embedding: np.ndarray | None = None) -> None:
        """One input's patch distances (h', w') for image `index`, and its pooled features (C,) if any."""
        self.parts[index].append((patch_map, item.box, cell_mask(item.valid, patch_map.shape)))
        if embedding is not None:
            self.pooled[index].append(np.asarray(embedding, dtype=np.float32))

    def embeddings(self) -> np.ndarray | None:
        """(n, C) float32: each image's pooled features, the mean over its inputs (None: none were given)."""
        if not all(self.pooled):
            return None
        return np.stack([np.mean(np.stack(tiles), axis=0, dtype=np.float32) for tiles in self.pooled])

    def results(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """(raw scores (n,) float32, one stitched map per image)."""
        raw, stitched = np.zeros(len(self.parts), dtype=np.float32), []
        for i, (hw, parts) in enumerate(zip(self.image_hw, self.parts)):
            maps, boxes, cells = zip(*parts)
            raw[i], canvas = combine_tiles(maps, boxes, cells, hw)
            stitched.append(canvas)
        return raw, stitched


def mean_over_inputs(images: Sequence[Any], inputs: Callable[[Any], Iterable[Any]],
                     run: Callable[[Any], Sequence[np.ndarray]], batch_size: int = 32,
                     stack: Callable[[list], Any] = np.stack) -> list[np.ndarray]:
    """Each image's outputs averaged over its model inputs: a whole image's one input, or the mean over a
    tiled image's tiles (how a classifier pools tiles: its head is linear, so the mean of the tiles'
    logits is the head of their mean features). The inputs are streamed `batch_size` at a time across
    images, so memory holds one batch whatever an image's size.

    inputs(image) -> one image's model inputs (arrays or tensors, made one at a time); stack(list) -> one
    batch of them; run(batch) -> the model's outputs, each (b, ...) numpy. Returns each output averaged
    per image, (n, ...) float32; [] when there are no images. Raises ValueError for an image with no input.
    """
    pending: list[tuple[int, Any]] = []
    sums: list[np.ndarray] = []
    counts = np.zeros(len(images), dtype=np.int64)

    def flush() -> None:
        owners = np.array([i for i, _ in pending])
        outputs = [np.asarray(o, dtype=np.float64) for o in run(stack([x for _, x in pending]))]
        if not sums:
            sums.extend(np.zeros((len(images), *o.shape[1:])) for o in outputs)
        for total, rows in zip(sums, outputs):
            np.add.at(total, owners, rows)
        np.add.at(counts, owners, 1)
        pending.clear()

    for i, image in enumerate(images):
        for item in inputs(image):
            pending.append((i, item))
            if len(pending) >= batch_size:
                flush()
    if pending:
        flush()
    if len(images) and not counts.all():
        raise ValueError("An image gave no model input.")
    shape = (-1,) + (1,) * 8
    return [(total / counts.reshape(shape[:total.ndim])).astype(np.float32) for total in sums]
