"""Regions of an image to inspect and to ignore, in coordinates relative to the image, so photos of
different sizes (and the camera's next resolution) share one drawing.

    {"roi":    [shape, ...],   # inspect only inside these (their union); empty: the whole image
     "ignore": [shape, ...],   # never score these (a serial number, a fixture, the belt)
     "roi_mask": png, "ignore_mask": png}   # optional mask images (base64 PNG, white = the region)

    shape: {"type": "rect", "x0": 0.1, "y0": 0.2, "x1": 0.5, "y1": 0.9}      fractions of width / height
           {"type": "polygon", "points": [[x, y], [x, y], [x, y], ...]}    idem, at least 3 points

A mask image of any size is stretched over the image (nearest neighbour), which is what relative
coordinates mean for a raster. `Regions.mask(height, width)` gives the pixels to score: inside the
region of interest (all when there is none) and outside every ignored region.
"""
from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .errors import InspectorError

_MASK_SIDE = 1024  # a stored mask image is kept at most this size (a region is never finer than 0.1 %)


def _shape(data: Any, where: str) -> dict[str, Any]:
    """A checked shape dict, in fractions within [0, 1]. Raises InspectorError naming `where`."""
    if not isinstance(data, dict) or data.get("type") not in ("rect", "polygon"):
        raise InspectorError(f"{where}: a region is a rectangle ({{'type': 'rect', 'x0', 'y0', 'x1', 'y1'}}) or a "
                             f"polygon ({{'type': 'polygon', 'points': [[x, y], ...]}}), got {data!r}.")
    if data["type"] == "rect":
        try:
            x0, y0, x1, y1 = (float(data[k]) for k in ("x0", "y0", "x1", "y1"))
        except (KeyError, TypeError, ValueError):
            raise InspectorError(f"{where}: a rectangle needs numbers x0, y0, x1, y1 (fractions of the image).") from None
        points = [(x0, y0), (x1, y1)]
        shape: dict[str, Any] = {"type": "rect", "x0": min(x0, x1), "y0": min(y0, y1), "x1": max(x0, x1),
                                 "y1": max(y0, y1)}
    else:
        try:
            points = [(float(x), float(y)) for x, y in data.get("points", [])]
        except (TypeError, ValueError):
            raise InspectorError(f"{where}: polygon points must be [x, y] pairs of numbers.") from None
        if len(points) < 3:
            raise InspectorError(f"{where}: a polygon needs at least 3 points, got {len(points)}.")
        shape = {"type": "polygon", "points": [list(p) for p in points]}
    if any(not (-1e-6 <= v <= 1 + 1e-6) for p in points for v in p):
        raise InspectorError(f"{where}: region coordinates are fractions of the image's width and height "
                             f"(0 to 1); got {points}.")
    return shape


def _encode_mask(mask: np.ndarray) -> str:
    image = Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
    if max(image.size) > _MASK_SIDE:
        image.thumbnail((_MASK_SIDE, _MASK_SIDE), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.convert("1").save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _decode_mask(text: str, where: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(base64.b64decode(text))) as image:
            return np.asarray(image.convert("L")) >= 128
    except Exception:
        raise InspectorError(f"{where} is not a readable mask image.") from None


def read_mask_image(path: str | Path) -> np.ndarray:
    """A mask image file -> (h, w) bool, True where it is light (grey level 128 or more; transparent
    pixels count as dark). Raises InspectorError for a missing or unreadable file, or an empty mask."""
    path = Path(path)
    if not path.is_file():
        raise InspectorError(f"Mask image {path} not found.")
    try:
        with Image.open(path) as image:
            image.load()
            grey = image.convert("LA") if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info else None
            if grey is not None:
                array = np.asarray(grey)
                mask = (array[:, :, 0] >= 128) & (array[:, :, 1] >= 128)
            else:
                array = np.asarray(image.convert("I") if image.mode in ("I", "I;16", "I;16B") else image.convert("L"))
                mask = array >= (32768 if array.dtype != np.uint8 and array.max() > 255 else 128)
    except (OSError, ValueError):
        raise InspectorError(f"{path} is not a readable image (a mask is a black and white picture).") from None
    if not mask.any():
        raise InspectorError(f"Mask image {path} is all dark: white marks the region, so it marks nothing.")
    return mask


@dataclass(frozen=True)
class Regions:
    """Where to look: a region of interest and regions to ignore (see the module docstring)."""

    roi: tuple[dict[str, Any], ...] = ()
    ignore: tuple[dict[str, Any], ...] = ()
    roi_mask: np.ndarray | None = field(default=None, compare=False)
    ignore_mask: np.ndarray | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "roi", tuple(_shape(s, f"region of interest {i + 1}") for i, s in enumerate(self.roi)))
        object.__setattr__(self, "ignore", tuple(_shape(s, f"ignore region {i + 1}") for i, s in enumerate(self.ignore)))

    @property
    def empty(self) -> bool:
        return not (self.roi or self.ignore or self.roi_mask is not None or self.ignore_mask is not None)

    def mask(self, height: int, width: int) -> np.ndarray | None:
        """(height, width) bool: True where the image is scored; None when there are no regions.
        Raises InspectorError when the regions leave nothing of the image to score."""
        if self.empty:
            return None
        inside = np.ones((height, width), dtype=bool)
        if self.roi or self.roi_mask is not None:
            inside = np.zeros((height, width), dtype=bool)
            if self.roi:
                inside |= _draw(self.roi, height, width)
            if self.roi_mask is not None:
                inside |= _stretch(self.roi_mask, height, width)
        if self.ignore:
            inside &= ~_draw(self.ignore, height, width)
        if self.ignore_mask is not None:
            inside &= ~_stretch(self.ignore_mask, height, width)
        if not inside.any():
            raise InspectorError("The regions leave nothing to inspect: the ignored regions cover the whole "
                                 "region of interest.")
        return inside

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"roi": [dict(s) for s in self.roi], "ignore": [dict(s) for s in self.ignore]}
        for name in ("roi_mask", "ignore_mask"):
            if getattr(self, name) is not None:
                data[name] = _encode_mask(getattr(self, name))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Regions:
        """Regions from `to_dict()` (or a hand-written regions.json); None or {}: no regions."""
        data = data or {}
        if not isinstance(data, dict):
            raise InspectorError("Regions are a JSON object with 'roi' and 'ignore' lists.")
        unknown = sorted(set(data) - {"roi", "ignore", "roi_mask", "ignore_mask"})
        if unknown:
            raise InspectorError(f"Unknown region fields: {', '.join(unknown)} (use roi, ignore, roi_mask, ignore_mask).")
        masks = {name: _decode_mask(data[name], name.replace("_", " ")) for name in ("roi_mask", "ignore_mask")
                 if data.get(name)}
        return cls(tuple(data.get("roi") or ()), tuple(data.get("ignore") or ()), **masks)

    @classmethod
    def read(cls, path: str | Path | None = None, roi_mask: str | Path | None = None,
             ignore_mask: str | Path | None = None) -> Regions:
        """Regions from a regions.json file and/or mask image files (any may be None)."""
        data: dict[str, Any] = {}
        if path is not None:
            try:
                data = json.loads(Path(path).read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise InspectorError(f"Regions file {path} not found.") from None
            except (OSError, ValueError) as exc:
                raise InspectorError(f"{path} is not a readable regions JSON file ({exc}).") from None
        regions = cls.from_dict(data)
        masks = {"roi_mask": read_mask_image(roi_mask) if roi_mask else regions.roi_mask,
                 "ignore_mask": read_mask_image(ignore_mask) if ignore_mask else regions.ignore_mask}
        return cls(regions.roi, regions.ignore, **masks)


def _draw(shapes: tuple[dict[str, Any], ...], height: int, width: int) -> np.ndarray:
    """The union of the shapes rasterised at (height, width), bool."""
    canvas = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for s in shapes:
        if s["type"] == "rect":
            box = (s["x0"] * width, s["y0"] * height, s["x1"] * width - 1, s["y1"] * height - 1)
            draw.rectangle(box, fill=1)
        else:
            draw.polygon([(x * width, y * height) for x, y in s["points"]], fill=1)
    return np.asarray(canvas, dtype=bool)


def _stretch(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    if mask.shape == (height, width):
        return mask
    image = Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
    return np.asarray(image.resize((width, height), Image.Resampling.NEAREST)) >= 128


def regions_of(preprocessing: dict[str, Any]) -> Regions:
    """The regions stored in a run's (or a bundle's) preprocessing settings; none when absent."""
    return Regions.from_dict(preprocessing.get("regions"))
