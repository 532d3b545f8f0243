"""The pixel scale of a run: how many model pixels a camera pixel becomes, chosen from the smallest
defect the user wants found (or from the images' size), and whether the images are tiled at it.

Measured on textile-sim's tiny local flaws (a few pixels on 250 px images; docs/BENCHMARKS.md): a
patch detector scores 0.59 AUROC at 256 px and 0.90 at 512 px, the same images enlarged 2x: a flaw
must cover about one cell of the first feature stage (stride 8) to be seen. So `auto` enlarges until
a defect of `defect_size` camera pixels spans DEFECT_INPUT_PX model pixels, and tiles the image at
that scale when the whole image would not fit the input. Scale is not free (more tiles, more time)
and not always a gain (320 px gave magnetic-tile nothing), so without a defect size images near the
input size stay whole, and only large ones are tiled, at their own resolution.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from .errors import InspectorError
from .runtime.tiling import DEFAULT_OVERLAP, tile_boxes

DEFECT_INPUT_PX = 8.0  # model pixels a defect should span: one cell of the stride-8 feature stage
MAX_SCALE = 4.0  # enlarging further only blurs: a camera pixel is never more than 4 model pixels
LARGE_IMAGE_FACTOR = 16.0  # without a defect size, tile images with 16x the input's pixels (4x per side) or more: a
# 640 x 480 photo stays whole (tiles at x1.00 gave magnetic-tile nothing at 10x the fitting time)


@dataclass(frozen=True)
class ScaleChoice:
    """The run's tiling (None: whole images, resized to the input as before) and why, in words."""

    tiling: dict[str, Any] | None
    reason: str

    @property
    def scale(self) -> float | None:
        """Model pixels per camera pixel of a tiled run (None: whole images)."""
        return None if self.tiling is None else self.tiling["input_size"] / self.tiling["tile"]


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return float(ordered[mid]) if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def choose_tiling(image_sizes: Sequence[tuple[int, int]], input_size: int, defect_size: float | None = None,
                  overlap: float = DEFAULT_OVERLAP) -> ScaleChoice:
    """How the images (their (height, width), camera pixels) become model inputs of input_size px.

    defect_size: the smallest defect to find, in camera pixels; None: whole images unless they are
    large (LARGE_IMAGE_FACTOR x the input's pixels), which are tiled at their own resolution.
    Raises InspectorError when there are no image sizes.
    """
    if not image_sizes:
        raise InspectorError("No images to choose a scale from.")
    height = _median([h for h, _ in image_sizes])
    width = _median([w for _, w in image_sizes])
    size = f"{width:.0f} x {height:.0f} px"
    if defect_size is None:
        if height * width <= LARGE_IMAGE_FACTOR * input_size ** 2:
            return ScaleChoice(None, f"whole images resized to {input_size} px: the images ({size}, median) are "
                                     f"near the model's input size (give --defect-size to look closer)")
        return ScaleChoice(_tiling(input_size, input_size, overlap),
                           f"tiles of {input_size} px at the camera's own resolution: the images ({size}, median) "
                           f"are over {LARGE_IMAGE_FACTOR:.0f}x the input's pixels, and squeezing them to "
                           f"{input_size} px would lose small defects")
    scale = min(MAX_SCALE, DEFECT_INPUT_PX / float(defect_size))
    if max(height, width) * scale <= input_size:
        return ScaleChoice(None, f"whole images resized to {input_size} px: a {defect_size:g} px defect already "
                                 f"spans {DEFECT_INPUT_PX:.0f} model pixels or more on {size} images")
    tile = max(8, round(input_size / scale))
    capped = " (the largest enlargement, 4x)" if scale == MAX_SCALE and DEFECT_INPUT_PX / defect_size > MAX_SCALE else ""
    return ScaleChoice(_tiling(tile, input_size, overlap),
                       f"tiles of {tile} camera px enlarged to {input_size} px (x{input_size / tile:.2f}{capped}), so a "
                       f"{defect_size:g} px defect spans about {defect_size * input_size / tile:.0f} model pixels, "
                       f"one feature cell; {len(tile_boxes(round(height), round(width), tile, overlap))} tiles per "
                       f"{size} image")


def _tiling(tile: int, input_size: int, overlap: float) -> dict[str, Any]:
    return {"tile": int(tile), "overlap": float(overlap), "input_size": int(input_size)}
