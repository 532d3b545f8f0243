"""Frozen configuration dataclasses, validated once at the boundary and saved as JSON with a run."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import InspectorError
from .runtime.images import BIT_DEPTHS

RESIZE_MODES = ("stretch", "letterbox", "crop")
DEVICES = ("auto", "cpu", "cuda", "mps")
AUGMENT_NAMES = ("none", "light", "industrial")  # the presets of inspector/augment.py, in that order
MAX_VAL_FRACTION = 0.9  # also enforced by data/splits.py: one limit for both


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides how a model is trained. `None` means "pick a good default"."""

    task: str = "classification"  # or "anomaly": learn from good parts only (inspector/tasks/)
    backbone: str = "tf_efficientnet_lite0"
    strategy: str = "auto"
    epochs: int | None = None
    image_size: int | None = None
    # stretch: the whole part fills the input. Measured on magnetic-tile (docs/BENCHMARKS.md) it beats
    # letterbox and crop by 5-10 points; letterbox keeps the aspect ratio, crop cuts the edges.
    resize_mode: str = "stretch"
    augment: str = "industrial"
    batch_size: int = 16
    lr: float | None = None
    weight_decay: float = 0.05
    layer_decay: float = 0.75
    warmup_epochs: int = 1
    patience: int = 6
    seed: int = 0
    device: str = "auto"
    val_fraction: float = 0.2
    max_folds: int = 5  # cross-validation folds when there are too few images for a hold-out split
    # False skips the (k-fold) accuracy estimate: one fit, no validation figure. For a quick model,
    # or when accuracy is measured elsewhere (benchmarks with their own test images).
    cross_validate: bool = True
    # Parts may lie in any orientation: frozen features are averaged over the image's 8 flips and
    # quarter turns (steadier with few images; 8x the inference work). False where orientation
    # itself is a defect, e.g. a part mounted upside down.
    any_orientation: bool = True
    weights_path: str | None = None
    name: str | None = None
    # Anomaly task: the classes that are good parts (None: the one named good/ok/normal/...), and the
    # false-reject rate the threshold promises on new good parts.
    ok_classes: tuple[str, ...] | None = None
    target_frr: float = 0.05
    # Anomaly task: add the 8 flips and quarter turns of every good image to the memory bank (parts that
    # lie any way round; 8x the fitting work, not measured on real data yet, so off by default).
    symmetric_bank: bool = False
    # The camera's bit depth for 16-bit grey images (10, 12, 14, 16): one brightness mapping for the
    # whole dataset and every image the model later sees. None: inferred once from the dataset.
    bit_depth: int | None = None
    # Domain adaptation (classification): another line's labelled dataset and unlabelled images from this
    # line, as given (folder or zip paths, stored with the run); None: not used.
    source: str | None = None
    unlabeled: str | None = None
    # The smallest defect to find, in camera pixels: the images are tiled at the scale where such a defect
    # spans a feature cell (runtime/tiling.py; anomaly task). None: whole images near the input size, large
    # ones tiled at their own resolution (scale.choose_tiling says which and why).
    defect_size: float | None = None
    # Where to look: a region of interest and regions to ignore (runtime/regions.py, Regions.to_dict()).
    regions: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.epochs is not None and not 1 <= self.epochs <= 1000:
            problems.append(f"epochs must be between 1 and 1000 (got {self.epochs})")
        if self.image_size is not None and not 32 <= self.image_size <= 1024:
            problems.append(f"image size must be between 32 and 1024 px (got {self.image_size})")
        if self.resize_mode not in RESIZE_MODES:
            problems.append(f"resize mode must be one of {', '.join(RESIZE_MODES)} (got {self.resize_mode!r})")
        if not 1 <= self.batch_size <= 1024:
            problems.append(f"batch size must be between 1 and 1024 (got {self.batch_size})")
        if self.lr is not None and not 0 < self.lr < 1:
            problems.append(f"learning rate must be between 0 and 1 (got {self.lr})")
        if not 0 < self.val_fraction < MAX_VAL_FRACTION:
            problems.append(f"validation fraction must be between 0 and {MAX_VAL_FRACTION} (got {self.val_fraction})")
        if self.augment not in AUGMENT_NAMES:
            problems.append(f"augmentation must be one of {', '.join(AUGMENT_NAMES)} (got {self.augment!r})")
        if not 0 < self.target_frr < 1:
            problems.append(f"target false-reject rate must be between 0 and 1 (got {self.target_frr})")
        if self.ok_classes is not None and (isinstance(self.ok_classes, str) or not all(self.ok_classes)):
            problems.append("OK classes must be a list of class names")
        if self.bit_depth is not None and self.bit_depth not in BIT_DEPTHS:
            problems.append(f"bit depth must be one of {', '.join(map(str, BIT_DEPTHS))} (got {self.bit_depth})")
        if not self.task or not isinstance(self.task, str):
            problems.append("task must be a task name such as classification or anomaly")
        if not 2 <= self.max_folds <= 20:
            problems.append(f"cross-validation folds must be between 2 and 20 (got {self.max_folds})")
        if self.device not in DEVICES:
            problems.append(f"device must be one of {', '.join(DEVICES)} (got {self.device!r})")
        if self.defect_size is not None and not 0.5 <= self.defect_size <= 10000:
            problems.append(f"defect size must be between 0.5 and 10000 camera pixels (got {self.defect_size})")
        if problems:
            raise InspectorError("Invalid training settings: " + "; ".join(problems) + ".")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["ok_classes"] = list(self.ok_classes) if self.ok_classes is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("ok_classes") is not None:
            values["ok_classes"] = tuple(values["ok_classes"])
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)
