"""Preprocessing and augmentation, always derived from the backbone's timm data config.

`Preprocessing` is saved with every run, so a model is always fed images exactly the way it
was trained: same size, same aspect-ratio handling, same normalisation. The resize to the model's
input is `inspector.runtime.resize.fit_to_input` on every path (training, evaluation, the app,
the service and the exported bundle), so they all see the same pixels; albumentations then does
the augmentations and the normalisation.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import albumentations as A
import cv2
import numpy as np
import timm
import torch

from .config import AUGMENT_NAMES, RESIZE_MODES
from .errors import InspectorError
from .runtime.resize import INTERPOLATIONS, fit_to_input
from .runtime.tiling import model_inputs


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB uint8 image becomes the backbone's input tensor."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    resize_mode: str = "stretch"  # stretch: fill | letterbox: keep aspect, pad | crop: keep aspect, centre crop
    # Shrink with pixel-area averaging: plain bicubic aliases the fine texture of a 600 px photo
    # at 224 px (magnetic-tile, linear probe: +1.1 / +1.5 points at 10 / 20 images per class,
    # -1.1 at 5, docs/BENCHMARKS.md). Runs stored before this field existed are fed as before.
    antialias: bool = True
    # The camera bit depth of 16-bit grey images (runtime.images.load_image); None: 8-bit data, or a run
    # stored before it existed (each 16-bit image then guesses its own).
    bit_depth: int | None = None
    # Overlapping tiles at one pixel scale instead of the whole image (runtime/tiling.py); None: whole image.
    tiling: dict[str, Any] | None = None
    # Regions to inspect and to ignore, relative to the image (runtime/regions.py); None: everywhere.
    regions: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        return cls(image_size=int(data["image_size"]), mean=tuple(data["mean"]), std=tuple(data["std"]),
                   interpolation=data.get("interpolation", "bicubic"),
                   resize_mode=data.get("resize_mode", "stretch"), antialias=data.get("antialias", False),
                   bit_depth=data.get("bit_depth"), tiling=data.get("tiling"), regions=data.get("regions"))

    @property
    def pad_value(self) -> tuple[int, int, int]:
        """Letterbox padding in the mean colour, so it normalises to zero."""
        return tuple(int(round(m * 255)) for m in self.mean)

    def resize_settings(self) -> dict[str, Any]:
        """What `inspector.runtime.resize.fit_to_input` reads (and preprocessing.json holds)."""
        return {**self.to_dict(), "pad_value": list(self.pad_value)}


def resolve_preprocessing(backbone: str, image_size: int | None = None,
                          resize_mode: str = "stretch", bit_depth: int | None = None) -> Preprocessing:
    """Preprocessing from timm's pretrained config for `backbone` (size may be overridden; bit_depth:
    the dataset's camera bit depth, see Preprocessing)."""
    if resize_mode not in RESIZE_MODES:
        raise InspectorError(f"Unknown resize mode {resize_mode!r}; use one of {', '.join(RESIZE_MODES)}.")
    cfg = timm.models.get_pretrained_cfg(backbone)
    size = image_size or (int(cfg.input_size[-1]) if cfg else 224)
    mean = tuple(cfg.mean) if cfg else timm.data.IMAGENET_DEFAULT_MEAN
    std = tuple(cfg.std) if cfg else timm.data.IMAGENET_DEFAULT_STD
    interpolation = cfg.interpolation if cfg and cfg.interpolation in INTERPOLATIONS else "bicubic"
    return Preprocessing(size, mean, std, interpolation, resize_mode, bit_depth=bit_depth)


def _light(prep: Preprocessing) -> list[A.BasicTransform]:
    return [A.HorizontalFlip(p=0.5),
            A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=0.5)]


def _industrial(prep: Preprocessing) -> list[A.BasicTransform]:
    # Parts on a line appear flipped and rotated, under drifting light and focus; defects keep
    # their shape, so geometry stays rigid (no strong warps that could erase a thin crack).
    return [
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.RandomRotate90(p=0.5),
        A.Affine(scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), rotate=(-10, 10),
                 border_mode=cv2.BORDER_CONSTANT, fill=prep.pad_value, p=0.5),
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.7),
        A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.GaussNoise(std_range=(0.01, 0.05))], p=0.3),
    ]


AUGMENT_PRESETS: dict[str, tuple[str, Callable[[Preprocessing], list[A.BasicTransform]]]] = {
    "none": ("No augmentation: every image is used as it is.", lambda prep: []),
    "light": ("Horizontal flips and small brightness/contrast changes.", _light),
    "industrial": ("Flips, 90 degree turns, small shifts and rotations, lighting, blur and noise: "
                   "for parts that can lie any way round.", _industrial),
}
assert tuple(AUGMENT_PRESETS) == AUGMENT_NAMES, "config.AUGMENT_NAMES validates these names"


def _pipeline(prep: Preprocessing, augment: str, seed: int | None,
              normalise: bool) -> Callable[[np.ndarray], np.ndarray]:
    """The runtime's resize, then `augment`'s albumentations (and Normalize): RGB uint8 -> HWC."""
    if augment not in AUGMENT_PRESETS:
        raise InspectorError(f"Unknown augmentation preset {augment!r}; use one of {', '.join(AUGMENT_PRESETS)}.")
    tail = [A.Normalize(mean=prep.mean, std=prep.std, max_pixel_value=255.0)] if normalise else []
    # Albumentations keeps its own random generator: a seed here makes augmentation reproducible.
    compose = A.Compose(AUGMENT_PRESETS[augment][1](prep) + tail, seed=seed)
    settings = prep.resize_settings()
    return lambda image: compose(image=fit_to_input(image, settings))["image"]


def build_transform(prep: Preprocessing, augment: str = "none",
                    seed: int | None = None) -> Callable[[np.ndarray], torch.Tensor]:
    """RGB uint8 HxWx3 -> normalised float CHW tensor, with `augment` applied after resizing."""
    pipeline = _pipeline(prep, augment, seed, normalise=True)

    def transform(image: np.ndarray) -> torch.Tensor:
        out = pipeline(image)
        return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))

    return transform


def build_inputs(prep: Preprocessing) -> Callable[[np.ndarray], Iterator[torch.Tensor]]:
    """RGB uint8 HxWx3 -> its model inputs as normalised float CHW tensors, made one at a time: the whole
    image (build_transform), or with `prep.tiling` each tile at the input size (runtime/tiling.py)."""
    transform = build_transform(prep, "none")
    if prep.tiling is None:
        return lambda image: iter((transform(image),))
    settings = prep.to_dict()
    return lambda image: (transform(item.pixels) for item in model_inputs(image, settings))


def inputs_of(transform: Callable[[np.ndarray], Any], image: np.ndarray) -> Iterable[torch.Tensor]:
    """An image's model inputs from a transform (one tensor) or from build_inputs (its tensors)."""
    out = transform(image)
    return (out,) if isinstance(out, torch.Tensor) else out


def build_preview(prep: Preprocessing, augment: str, seed: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """Like build_transform but returns the augmented uint8 image (for the app's preview)."""
    return _pipeline(prep, augment, seed, normalise=False)


def letterbox_box(prep: Preprocessing, width: int, height: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the image inside the model input, to undo the letterbox."""
    size = prep.image_size
    if prep.resize_mode != "letterbox":
        return 0, 0, size, size
    scale = size / max(width, height)
    new_w, new_h = round(width * scale), round(height * scale)
    left, top = (size - new_w) // 2, (size - new_h) // 2
    return left, top, left + new_w, top + new_h
