"""A guard for images unlike anything trained: how far an image's features lie from the training images'.

A classifier names one of its classes for any photo, however foreign (another product on the line, a
hand, a lens cap), and often confidently. So every run keeps a compact model of its training images'
features (one vector per image: the model's own pooled embedding) and a limit on how far a normal new
image may lie; an image beyond the limit gets the verdict UNSURE with the reason "unlike the training
images" (rows.familiarity_row), whatever the model said.

The model of the features (`FamiliarityGuard`), per block of features (a multiscale classifier's
embedding is its pooled stages and its final features side by side; each is one block): their mean and
the training images' main directions of variation (the first COMPONENTS principal components, fewer
than the images). A block's distance is the part of an image's features outside that subspace (the
reconstruction residual, root mean square per feature) in units of a familiar image's (the median
out-of-fold residual); the image's distance is the root mean square of its blocks', so a training-like
image scores about 1. Chosen by measurement (docs/BENCHMARKS.md, "Images unlike the training images"):
on frozen lite0 features of magnetic-tile, textile-sim and the sample data, the residual caught another
product's images more often than a Mahalanobis distance inside the subspace (alone or added), a shrunk
(Ledoit-Wolf) Mahalanobis distance or the distance to the nearest training image, each with or without
standardising every feature, and than 4, 16 or 32 components; the early stages' block catches surfaces
the final features confuse (textile-sim shown to a sample-data model: 0-5 % caught with the whole
embedding as one block, 100 % per block).

The limit is calibrated out of fold: each training image's distance from a guard fitted without it
(FOLDS-fold), so the limit sees images as new as the ones on the line. It is the split-conformal quantile
of those distances for a false-flag rate of FALSE_FLAG_RATE (the ceil((n + 1)(1 - rate))-th smallest),
which flags at most that share of new training-like images on average; with too few images for that
quantile (n < 1 / rate - 1: 48 images or fewer at 2 %), a one-sided prediction bound on their logarithms
(`prediction_bound`): a new distance exceeds the largest of n exchangeable ones with probability
1 / (n + 1) (5.9 % for 16 images), so no order statistic of so few can promise the rate and the limit has
to extrapolate the tail; the bound does so assuming log-normal distances, wider the fewer the images
(Student's t for the estimated spread). Measured on anomaly runs of 16 good images (docs/BENCHMARKS.md):
2.0 % of new magnetic-tile and 0 % of textile-sim good images flagged, where the largest distance x 1.1
flagged 5.3 % and 0.7 %; every photo of the other product still caught.

Torch-free (stdlib and numpy only): this package is copied into every exported bundle. The guard is
stored as JSON (`to_dict`): the run's recipe["familiarity"] and the bundle's labels.json["familiarity"].
"""
from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Sequence

import numpy as np

COMPONENTS = 8
FOLDS = 10
FALSE_FLAG_RATE = 0.02  # the target: at most 2 % of new training-like images flagged
MIN_IMAGES = 4  # fewer training images than this: no guard (nothing to calibrate a limit with)
VERSION = 1


@dataclass(frozen=True)
class BlockModel:
    """One block of features: the training images' mean (D,), their main directions (k, D), orthonormal
    rows, and a familiar image's residual (`scale`, the distances' unit)."""

    mean: np.ndarray
    components: np.ndarray
    scale: float = 1.0

    @property
    def width(self) -> int:
        return int(self.mean.shape[0])

    def distance(self, features: np.ndarray) -> np.ndarray:
        centred = np.asarray(features, dtype=np.float64) - self.mean
        projected = centred @ self.components.T
        residual = np.maximum((centred ** 2).sum(1) - (projected ** 2).sum(1), 0.0)
        return np.sqrt(residual / self.width) / self.scale

    def to_dict(self) -> dict[str, Any]:
        return {"width": self.width, "components": int(self.components.shape[0]), "scale": float(self.scale),
                "mean": _encode(self.mean), "directions": _encode(self.components)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlockModel:
        width, k = int(data["width"]), int(data["components"])
        mean, directions = _decode(data["mean"]), _decode(data["directions"])
        if mean.shape != (width,) or directions.size != k * width:
            raise ValueError("familiarity guard arrays of the wrong shape")
        return cls(mean, directions.reshape(k, width), float(data["scale"]))


@dataclass(frozen=True)
class FamiliarityGuard:
    """The training images' feature model, one BlockModel per block of features (side by side in a
    feature row), and the limit of a familiar image's distance; n_images: how many it was fitted on."""

    blocks: tuple[BlockModel, ...]
    limit: float
    n_images: int

    @property
    def dimensions(self) -> int:
        return sum(block.width for block in self.blocks)

    def distance(self, features: np.ndarray) -> np.ndarray:
        """(n,) distances of feature rows (n, D): about 1 for a training-like image, larger the less like
        them. Raises ValueError when the rows have another width than the training images' features."""
        x = np.asarray(features, dtype=np.float64)
        if len(x) == 0:
            return np.zeros(0)
        if x.ndim != 2 or x.shape[1] != self.dimensions:
            raise ValueError(f"features of shape {x.shape}; this guard was fitted on {self.dimensions} features")
        parts = np.split(x, np.cumsum([block.width for block in self.blocks])[:-1], axis=1)
        return np.sqrt(np.mean([block.distance(part) ** 2 for block, part in zip(self.blocks, parts)], axis=0))

    def beyond(self, features: np.ndarray) -> np.ndarray:
        """(n,) True where an image lies beyond the limit."""
        return self.distance(features) > self.limit

    def to_dict(self) -> dict[str, Any]:
        """JSON-able and compact: the arrays as base64 float32 (little-endian)."""
        return {"version": VERSION, "method": "pca_residual", "n_images": self.n_images, "limit": float(self.limit),
                "dimensions": self.dimensions, "blocks": [block.to_dict() for block in self.blocks]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FamiliarityGuard:
        """Raises ValueError for another version or damaged arrays."""
        if data.get("version") != VERSION:
            raise ValueError(f"familiarity guard version {data.get('version')!r}; this code reads {VERSION}")
        return cls(tuple(BlockModel.from_dict(block) for block in data["blocks"]), float(data["limit"]),
                   int(data["n_images"]))


def _encode(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def _decode(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float64)


def _as_float32(array: np.ndarray) -> np.ndarray:
    """The stored precision: a guard computes the same distances before and after a JSON round trip."""
    return np.asarray(array, dtype=np.float32).astype(np.float64)


def _fit_block(features: np.ndarray, components: int) -> BlockModel:
    """One block's model, its distances unscaled."""
    x = np.asarray(features, dtype=np.float64)
    mean = _as_float32(x.mean(0))
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    k = max(1, min(components, len(x) - 1, len(vt)))
    return BlockModel(mean, _as_float32(vt[:k]))


def out_of_fold_distances(features: np.ndarray, folds: int = FOLDS, components: int = COMPONENTS,
                          seed: int = 0) -> np.ndarray:
    """(n,) each image's distance (unscaled) from one block's model of the other folds' images
    (leave-one-out with `folds` or fewer images)."""
    x = np.asarray(features, dtype=np.float64)
    n = len(x)
    order = np.random.default_rng(seed).permutation(n)
    distances = np.empty(n)
    for fold in np.array_split(order, min(folds, n)):
        distances[fold] = _fit_block(x[np.setdiff1d(order, fold)], components).distance(x[fold])
    return distances


def student_t_quantile(p: float, dof: int) -> float:
    """The p-quantile of Student's t with `dof` degrees of freedom (stdlib only: a bundle has no scipy): the
    normal quantile's Cornish-Fisher expansion in 1 / dof (Abramowitz and Stegun, Handbook of Mathematical
    Functions, 26.7.5); off by under 0.4 % at 3 degrees of freedom, under 0.02 % from 7 (p 0.95-0.99)."""
    x = NormalDist().inv_cdf(p)
    terms = ((x ** 3 + x) / 4, (5 * x ** 5 + 16 * x ** 3 + 3 * x) / 96,
             (3 * x ** 7 + 19 * x ** 5 + 17 * x ** 3 - 15 * x) / 384,
             (79 * x ** 9 + 776 * x ** 7 + 1482 * x ** 5 - 1920 * x ** 3 - 945 * x) / 92160)
    return x + sum(term / dof ** (i + 1) for i, term in enumerate(terms))


def prediction_bound(distances: np.ndarray, rate: float = FALSE_FLAG_RATE) -> float:
    """The small-sample limit: the one-sided 1 - rate prediction bound for one new distance, assuming the
    logarithms of the distances normal (mean m, standard deviation s of the n out-of-fold distances'
    logarithms): exp(m + t(1 - rate; n - 1) * s * sqrt(1 + 1 / n)) (the normal prediction interval for a
    single future observation: Hahn and Meeker, Statistical Intervals, Wiley 1991), never below the
    largest distance. It widens as n shrinks: t and sqrt(1 + 1 / n) both grow (for 16 images 2.32 standard
    deviations above the mean, for 48 2.13)."""
    d = np.asarray(distances, dtype=np.float64)
    logs = np.log(np.maximum(d, 1e-12))
    n = len(d)
    spread = float(logs.std(ddof=1)) if n > 1 else 0.0
    bound = math.exp(float(logs.mean()) + student_t_quantile(1.0 - rate, max(n - 1, 1)) * spread * math.sqrt(1 + 1 / n))
    return max(bound, float(d.max()))


def calibrated_limit(distances: np.ndarray, rate: float = FALSE_FLAG_RATE) -> float:
    """The limit from out-of-fold distances: their split-conformal quantile for `rate` (the
    ceil((n + 1)(1 - rate))-th smallest) or, with too few images for it, `prediction_bound`."""
    d = np.sort(np.asarray(distances, dtype=np.float64))
    rank = math.ceil((len(d) + 1) * (1.0 - rate))
    return prediction_bound(d, rate) if rank > len(d) else float(d[rank - 1])


def fit_guard(features: np.ndarray, blocks: Sequence[int] | None = None, *, folds: int = FOLDS,
              components: int = COMPONENTS, rate: float = FALSE_FLAG_RATE, seed: int = 0) -> FamiliarityGuard | None:
    """The guard of training images' features (n, D), one row per image, its limit calibrated out of fold.

    blocks: the widths of the blocks side by side in a row (summing to D; default one block). Returns None
    with fewer than MIN_IMAGES images or features that are not finite. Raises ValueError when the blocks
    do not add up to the features' width."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < MIN_IMAGES or not np.isfinite(x).all():
        return None
    widths = list(blocks) if blocks else [x.shape[1]]
    if sum(widths) != x.shape[1] or min(widths) < 1:
        raise ValueError(f"feature blocks {widths} do not add up to the {x.shape[1]} features")
    models, oof = [], []
    for part in np.split(x, np.cumsum(widths)[:-1], axis=1):
        distances = out_of_fold_distances(part, folds, components, seed)
        scale = float(np.float32(max(float(np.median(distances)), 1e-12)))
        block = _fit_block(part, components)
        models.append(BlockModel(block.mean, block.components, scale))
        oof.append(distances / scale)
    combined = np.sqrt(np.mean(np.square(oof), axis=0))
    return FamiliarityGuard(tuple(models), float(np.float32(calibrated_limit(combined, rate))), len(x))


def read_guard(data: dict[str, Any] | None) -> FamiliarityGuard | None:
    """The guard stored in a recipe or labels.json (None: none stored)."""
    return FamiliarityGuard.from_dict(data) if data else None
