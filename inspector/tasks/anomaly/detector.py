"""A patch memory-bank anomaly detector (PatchCore family) learned from good images only.

How it scores an image:
  1. The frozen, pretrained backbone gives feature maps of mid-level stages (`layers`).
  2. Each map is averaged over a small neighbourhood (`neighbourhood` x `neighbourhood`), so a
     patch describes its surroundings; deeper maps are upsampled to the first map's grid and
     the maps are concatenated: one feature vector per patch.
  3. `fit` keeps the patches of the good images as a memory bank, thinned by greedy k-center
     coreset selection when larger than `max_bank` (the kept patches cover all the others).
  4. A patch's anomaly distance is the Euclidean distance to its nearest bank patch; the
     image's raw score is the largest patch distance. The distances form the anomaly map.

With `symmetric=True` every good image also enters the bank in its 8 flips and quarter turns,
for parts that can lie any way round. The state is plain tensors plus a JSON-able dict.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ...augment import build_transform, resolve_preprocessing
from ...backbones import create_model
from ...engine.device import prepare_model, to_device
from ...engine.distributed import SINGLE, Ranks
from ...engine.progress import NO_PROGRESS, Work
from ...errors import InspectorError
from ...runtime.familiarity import fit_guard
from ...runtime.regions import Regions
from ...runtime.tiling import (DEFAULT_OVERLAP, ImageMaps, ModelInput, cell_mask, combine_tiles, model_inputs,
                               tile_boxes)

ProgressFn = Callable[[int, int], None]
STATE_VERSION = 1
_BACKBONE_PREFIX = "backbone."
INTENSITY_MODES = ("as_is", "standardise")


@dataclass(frozen=True)
class DetectorConfig:
    """Everything that defines a detector before it has seen an image; saved as JSON."""

    backbone: str = "tf_efficientnet_lite0"
    image_size: int | None = None  # None: the backbone's default input size
    resize_mode: str = "stretch"
    layers: tuple[int, ...] = (2, 3)  # indices into the backbone's feature stages (2: stride 8, 3: stride 16)
    neighbourhood: int = 3  # local average pooling window (patches), 1 turns it off
    max_bank: int = 4096  # greedy coreset above this many patches (caps the 1-NN cost per patch)
    coreset_ratio: float = 0.10  # keep at most this share of the patches (10 % and 25 % scored alike, 0.838 vs 0.837)
    projection_dim: int = 128  # random projection used only to choose the coreset
    symmetric: bool = False  # add the 8 flips / quarter turns of every good image to the bank
    intensity: str = "as_is"  # "standardise": each image to a fixed mean and contrast first (lighting drift)
    batch_size: int = 16
    seed: int = 0
    bit_depth: int | None = None  # the dataset's camera bit depth (16-bit images; see augment.Preprocessing)
    tiling: dict[str, Any] | None = None  # overlapping tiles at one pixel scale (runtime/tiling.py); None: whole image
    regions: dict[str, Any] | None = None  # where to look and what to ignore (runtime/regions.py); None: everywhere

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(int(i) for i in self.layers))
        if not self.layers or len(set(self.layers)) != len(self.layers) or min(self.layers) < 0:
            raise InspectorError(f"Feature layers must be distinct stage numbers (0 or more), got {list(self.layers)}.")
        if self.image_size is not None and int(self.image_size) < 32:
            raise InspectorError(f"The image size must be at least 32 pixels, got {self.image_size}.")
        if self.neighbourhood < 1 or self.neighbourhood % 2 == 0:
            raise InspectorError(f"The neighbourhood must be an odd number of patches (1, 3, 5...), got {self.neighbourhood}.")
        if self.max_bank < 1:
            raise InspectorError(f"The memory bank must hold at least one patch, got max_bank={self.max_bank}.")
        if not 0.0 < self.coreset_ratio <= 1.0:
            raise InspectorError(f"The coreset ratio must be in (0, 1], got {self.coreset_ratio}.")
        if self.intensity not in INTENSITY_MODES:
            raise InspectorError(f"Unknown intensity mode {self.intensity!r}; use one of {', '.join(INTENSITY_MODES)}.")
        if self.batch_size < 1:
            raise InspectorError(f"The batch size must be at least 1, got {self.batch_size}.")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["layers"] = list(self.layers)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InspectorError(f"Unknown anomaly detector settings: {', '.join(unknown)}.")
        return cls(**data)


def dihedral_views(image: np.ndarray) -> list[np.ndarray]:
    """The 8 flips and quarter turns of an HxWxC image (the first is the image itself)."""
    views = []
    for flipped in (image, image[:, ::-1]):
        for k in range(4):
            views.append(np.ascontiguousarray(np.rot90(flipped, k)))
    return views


def standardise_intensity(image: np.ndarray, mean: float = 128.0, std: float = 48.0) -> np.ndarray:
    """The image shifted and stretched to a fixed mean and standard deviation (all channels together)."""
    x = image.astype(np.float32)
    spread = float(x.std())
    x = (x - float(x.mean())) * (std / max(spread, 1.0)) + mean
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def _check_images(images: list[np.ndarray], what: str = "images") -> list[np.ndarray]:
    if images is None or len(images) == 0:
        raise InspectorError(f"No {what} were given: the anomaly detector needs at least one image.")
    for i, image in enumerate(images):
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            got = getattr(image, "shape", type(image).__name__)
            raise InspectorError(f"Image {i + 1} is not an RGB picture (expected height x width x 3 bytes, got {got}).")
        if image.shape[0] < 8 or image.shape[1] < 8:
            raise InspectorError(f"Image {i + 1} is too small ({image.shape[1]}x{image.shape[0]} pixels).")
    return list(images)


CANDIDATES_PER_BANK_ROW = 20  # the greedy coreset picks a bank from at most 20x its size of sampled patches

# Costs in forward passes of the backbone (one image at inference at 256 px), measured on the 2-core
# development machine: a greedy coreset iteration costs this per candidate row (2e-8 s at 24,576 rows,
# 7e-8 s at 40,960, 5e-7 s under heavy load; a pass ~0.05 s), a nearest-bank search this per query
# patch x bank row x feature (8.2e-11 s at 0.094 s per pass). They only plan the run's ETA; the
# measured speed of each phase replaces them as it runs.
CORESET_PASSES_PER_ROW = 1.5e-6
SEARCH_PASSES_PER_MAC = 8.7e-10
CORESET_REPORT_EVERY = 16  # iterations between progress reports


def greedy_coreset(features: torch.Tensor, size: int, projection_dim: int = 128, seed: int = 0,
                   on_step: Callable[[int], None] | None = None) -> torch.Tensor:
    """Indices of `size` rows chosen by greedy k-center selection (PatchCore's coreset).

    Distances are computed on a fixed random projection (Johnson-Lindenstrauss), so the cost is
    O(N x size x projection_dim). Starts from a seeded random row: reproducible. on_step(k): k more
    rows chosen (every CORESET_REPORT_EVERY iterations, and the rest at the end).
    """
    n = features.shape[0]
    if size >= n:
        return torch.arange(n)
    gen = torch.Generator().manual_seed(seed)
    x = features.float()
    if projection_dim and x.shape[1] > projection_dim:
        proj = torch.randn(x.shape[1], projection_dim, generator=gen) / math.sqrt(projection_dim)
        x = x @ proj.to(x.device)
    chosen = torch.empty(size, dtype=torch.long)
    current = int(torch.randint(n, (1,), generator=gen))
    min_dist = torch.full((n,), float("inf"), device=x.device)
    sq = (x * x).sum(1)
    for i in range(size):
        chosen[i] = current
        c = x[current]
        d = sq - 2 * (x @ c) + sq[current]
        torch.minimum(min_dist, d, out=min_dist)
        current = int(torch.argmax(min_dist))
        if on_step and (i + 1) % CORESET_REPORT_EVERY == 0:
            on_step(CORESET_REPORT_EVERY)
    if on_step and size % CORESET_REPORT_EVERY:
        on_step(size % CORESET_REPORT_EVERY)
    return chosen


def nearest_distance(queries: torch.Tensor, bank: torch.Tensor, bank_sq: torch.Tensor | None = None,
                     chunk: int = 2048) -> torch.Tensor:
    """Euclidean distance of each query row to its nearest bank row (exact, chunked matmul)."""
    if bank_sq is None:
        bank_sq = (bank * bank).sum(1)
    out = torch.empty(queries.shape[0], device=queries.device)
    for start in range(0, queries.shape[0], chunk):
        q = queries[start:start + chunk]
        d = torch.addmm(bank_sq.unsqueeze(0), q, bank.T, alpha=-2.0)  # |b|^2 - 2 q.b
        out[start:start + chunk] = d.min(1).values + (q * q).sum(1)
    return out.clamp_min_(0).sqrt_()


class ImagePatches:
    """The patch features of one image's model inputs (one, or one per tile): the tensors
    (V, h', w', C) per input, the squares they show (top, left, side) and the cells that may be
    scored ((V, h', w') bool per input, None: all)."""

    def __init__(self, image_hw: tuple[int, int]) -> None:
        self.image_hw = tuple(int(v) for v in image_hw)
        self.feats: list[torch.Tensor] = []
        self.boxes: list[tuple[int, int, int]] = []
        self.cells: list[np.ndarray | None] = []

    def add(self, feats: torch.Tensor, box: tuple[int, int, int], cells: np.ndarray | None) -> None:
        self.feats.append(feats)
        self.boxes.append(box)
        self.cells.append(cells)

    def bank_rows(self, limit: int | None = None, seed: int = 0) -> torch.Tensor:
        """(P, C): every patch that may be scored, of every input and view (the memory bank's candidates);
        with `limit`, a seeded random sample of at most that many (a copy: the caller keeps it, not a view)."""
        rows = torch.cat([f.reshape(-1, f.shape[-1]) if c is None else f[torch.from_numpy(c).to(f.device)]
                          for f, c in zip(self.feats, self.cells)])
        if limit is None or rows.shape[0] <= limit:
            return rows
        keep = torch.randperm(rows.shape[0], generator=torch.Generator().manual_seed(seed))[:limit]
        return rows[keep.to(rows.device)]

    def embedding(self) -> np.ndarray:
        """(C,): the patch features (view 0) averaged over each input's cells, then over the inputs, as
        `PatchDetector.score_all` and the exported graph's embedding output compute them."""
        return np.mean(np.stack([f[0].mean(dim=(0, 1)).cpu().numpy() for f in self.feats]), axis=0, dtype=np.float32)

    def raw_score(self, bank: torch.Tensor, bank_sq: torch.Tensor, batch_size: int = 32) -> float:
        """The image's raw score against `bank`: its largest scorable patch distance (view 0). Its inputs
        are searched `batch_size` at a time: one search per tile of a 9 MP image raised the process's
        memory by up to 2 GB (the 48 MP calibration peaked at 14 GB), in batches it stays flat."""
        maps: list[np.ndarray] = []
        for first in range(0, len(self.feats), batch_size):
            batch = torch.cat([f[0:1] for f in self.feats[first:first + batch_size]])
            maps.extend(_distances(batch, bank, bank_sq).cpu().numpy())
        return combine_tiles(maps, self.boxes, [None if c is None else c[0] for c in self.cells], self.image_hw)[0]


def _distances(feats: torch.Tensor, bank: torch.Tensor, bank_sq: torch.Tensor | None = None) -> torch.Tensor:
    """(B, H', W', C) features -> (B, H', W') nearest-bank distances."""
    b, h, w, c = feats.shape
    return nearest_distance(feats.reshape(-1, c), bank, bank_sq).reshape(b, h, w)


class PatchDetector:
    """Fit on good images, then score any image: raw score and per-patch distance map."""

    def __init__(self, config: DetectorConfig, device: torch.device | str = "cpu",
                 weights_path=None, pretrained: bool = True) -> None:
        self.config = config
        self.device = torch.device(device)
        self.preprocessing = dataclasses.replace(
            resolve_preprocessing(config.backbone, config.image_size, config.resize_mode, bit_depth=config.bit_depth),
            tiling=config.tiling, regions=config.regions)
        self._settings = self.preprocessing.resize_settings()
        self.planned_inputs = 1  # model inputs per image, for the ETA only (a tiled run's tiles: `plan_for`)
        self.regions = Regions.from_dict(config.regions)
        self._transform = build_transform(self.preprocessing, "none")
        model = create_model(config.backbone, 0, pretrained=pretrained, weights_path=weights_path)
        self.model = prepare_model(model.eval(), self.device)  # channels_last: 1.7x faster patch features on CPU
        n_stages = len(getattr(self.model, "feature_info", []) or [])
        if n_stages and max(config.layers) >= n_stages:
            raise InspectorError(f"Backbone {config.backbone} has feature stages 0 to {n_stages - 1}; "
                                 f"layers {list(config.layers)} do not exist.")

    # -- features ---------------------------------------------------------------------------
    def _features(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, H', W', C) locally aggregated patch features."""
        maps = self.model.forward_intermediates(batch, indices=list(self.config.layers),
                                                intermediates_only=True, stop_early=True)
        k = self.config.neighbourhood
        size = maps[0].shape[-2:]
        out = []
        for m in maps:
            if k > 1:
                # Zero padding counts in the average (as in PatchCore): border patches stay recognisable as
                # borders. Excluding it (count_include_pad=False) cost 0.76 -> 0.62 AUROC on magnetic-tile.
                m = F.avg_pool2d(m, k, stride=1, padding=k // 2)
            if m.shape[-2:] != size:
                m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
            out.append(m)
        return torch.cat(out, 1).permute(0, 2, 3, 1).contiguous()

    def model_inputs(self, image: np.ndarray) -> Iterator[ModelInput]:
        """The model inputs of one RGB uint8 image: itself resized, or its tiles one at a time
        (runtime/tiling.py), each with the pixels that may be scored (the run's regions)."""
        if self.config.intensity == "standardise":
            image = standardise_intensity(image)
        return model_inputs(image, self._settings, self.regions.mask(*image.shape[:2]))

    def _stream(self, images: list[np.ndarray], views: int, on_batch: ProgressFn | None
                ) -> Iterator[tuple[list[tuple[int, ModelInput]], torch.Tensor]]:
        """Batches of ((image index, model input) pairs, their patch features (B, V, h', w', C)): the
        inputs of all the images streamed in order, `views` = 8 dihedral views of each or 1 (as is).
        Only one batch of inputs is ever in memory. on_batch(images done, images)."""
        pending: list[tuple[int, ModelInput]] = []
        total, bs = len(images), self.config.batch_size

        def run() -> torch.Tensor:
            pixels = [v for _, item in pending for v in (dihedral_views(item.pixels) if views > 1 else (item.pixels,))]
            batch = to_device(torch.stack([self._transform(p) for p in pixels]), self.device)
            with torch.inference_mode():
                feats = self._features(batch)
            return feats.reshape(len(pending), views, *feats.shape[1:])

        for i, image in enumerate(images):
            for item in self.model_inputs(image):
                pending.append((i, item))
                if len(pending) * views >= bs:
                    yield list(pending), run()
                    first_open = pending[-1][0]
                    pending.clear()
                    if on_batch is not None and first_open:
                        on_batch(first_open, total)  # the images before the last one are done
        if pending:
            yield list(pending), run()
        if on_batch is not None and total:
            on_batch(total, total)

    def embed(self, images: list[np.ndarray], on_batch: ProgressFn | None = None) -> torch.Tensor:
        """(n, H', W', C) patch features of whole-image inputs (float32, on the detector's device).
        Raises InspectorError for a tiled detector (its images have different numbers of tiles)."""
        if self.config.tiling:
            raise InspectorError("A tiled detector's images have one feature map per tile: use score().")
        images = _check_images(images)
        return torch.cat([feats[:, 0] for _, feats in self._stream(images, 1, on_batch)])

    def _embed_for_bank(self, images: list[np.ndarray], on_batch: ProgressFn | None) -> list[ImagePatches]:
        """Each image's patch features, with `symmetric` in its 8 dihedral views (view 0 = as is)."""
        views = 8 if self.config.symmetric else 1
        found: list[ImagePatches] = [ImagePatches(image.shape[:2]) for image in images]
        for pairs, feats in self._stream(images, views, on_batch):
            for (i, item), f in zip(pairs, feats):
                cells = cell_mask(item.valid, f.shape[1:3])
                found[i].add(f, item.box, None if cells is None else np.stack(dihedral_views(cells[:, :, None]))[..., 0]
                             if views > 1 else cells[None])
        return found

    # -- planning (the run's ETA) -----------------------------------------------------------
    def patch_grid(self) -> tuple[int, int, int]:
        """(H', W', C) of an image's patch features, from the backbone's feature info (no image needed)."""
        info = getattr(self.model, "feature_info", None) or []
        layers = self.config.layers
        stride = info[layers[0]]["reduction"] if len(info) > max(layers) else 8
        channels = sum(info[i]["num_chs"] for i in layers) if len(info) > max(layers) else 256
        side = math.ceil(self.preprocessing.image_size / stride)
        return side, side, channels

    def plan_for(self, image_hw: tuple[int, int]) -> PatchDetector:
        """Plan the ETA for images of about this (height, width): a tiled run's tiles per image."""
        tiling = self.config.tiling
        if tiling:
            self.planned_inputs = len(tile_boxes(int(image_hw[0]), int(image_hw[1]), int(tiling["tile"]),
                                                 float(tiling.get("overlap", DEFAULT_OVERLAP))))
        return self

    def candidate_limit(self) -> int:
        """The most bank candidates kept per image: what the greedy coreset samples at most (20 x max_bank).
        A 48 MP strip has 1.4 M patches per view; keeping them all for every training image took 13.6 GB
        for two such images (docs/BENCHMARKS.md), while each bank only ever samples this many."""
        return CANDIDATES_PER_BANK_ROW * self.config.max_bank

    def _coreset_plan(self, n_rows: int) -> tuple[int, int]:
        """(bank size, candidate rows of the greedy pass; 0: no coreset) for a bank of n_rows patches."""
        cfg = self.config
        size = min(cfg.max_bank, max(1, math.ceil(cfg.coreset_ratio * n_rows)))
        return (n_rows, 0) if size >= n_rows else (size, min(n_rows, CANDIDATES_PER_BANK_ROW * size))

    def _bank_work(self, phase: str, n_images: int, fold: str) -> tuple[Work, int]:
        """The planned coreset step of a bank over n_images' patches, and the bank's size."""
        h, w, _ = self.patch_grid()
        views = 8 if self.config.symmetric else 1
        size, rows = self._coreset_plan(n_images * self.planned_inputs * views * h * w)
        return Work(phase, size if rows else 0, "patches", cost=rows * CORESET_PASSES_PER_ROW, fold=fold), size

    def fit_work(self, n_images: int, n_scored: int = 0, folds: int = 5) -> list[Work]:
        """The planned work of `out_of_sample_scores(fit=True)` and of scoring n_scored images after it
        (engine/progress.py): embedding, each fold's coreset and held-out scoring, the final bank."""
        h, w, c = self.patch_grid()
        inputs = self.planned_inputs  # tiles per image: each is one forward pass and one patch map
        steps = [Work("features", n_images, "images", cost=inputs * (8.0 if self.config.symmetric else 1.0))]
        k = min(folds, n_images)
        for f in range(k):
            held = len(range(f, n_images, k))
            coreset, size = self._bank_work("coreset", n_images - held, f"{f + 1}/{k}")
            steps += [coreset, Work("calibration", held, "images",
                                    cost=inputs * h * w * size * c * SEARCH_PASSES_PER_MAC, fold=f"{f + 1}/{k}")]
        bank, size = self._bank_work("bank", n_images, "final")
        steps.append(bank)
        if n_scored:
            steps.append(Work("scoring", n_scored, "images",
                              cost=inputs * (1.0 + h * w * size * c * SEARCH_PASSES_PER_MAC)))
        return steps

    # -- fitting ----------------------------------------------------------------------------
    def _bank_from(self, feats: torch.Tensor, progress=NO_PROGRESS, phase: str = "bank",
                   fold: str = "final") -> torch.Tensor:
        """A (M, C) memory bank from (..., C) patch features, coreset-thinned when large. `progress`
        (a ProgressTracker) follows the greedy pass as a `phase` step of `fold`."""
        flat = feats.reshape(-1, feats.shape[-1])
        cfg = self.config
        size, rows = self._coreset_plan(flat.shape[0])
        progress.start(phase, fold=fold, total=size if rows else 0, unit="patches")
        if not rows:
            return flat.clone()
        if flat.shape[0] > rows:  # keeps the greedy pass bounded on very large banks
            gen = torch.Generator().manual_seed(cfg.seed + 1)
            flat = flat[torch.randperm(flat.shape[0], generator=gen)[:rows].to(flat.device)]
        idx = greedy_coreset(flat, size, cfg.projection_dim, cfg.seed, on_step=progress.advance)
        return flat[idx.to(flat.device)].clone()

    def _set_bank(self, bank: torch.Tensor, n_train: int, feature_hw: tuple[int, int]) -> None:
        self.memory_bank_ = bank.contiguous()
        self._bank_sq = (self.memory_bank_ * self.memory_bank_).sum(1)
        self.n_train_ = int(n_train)
        self.feature_hw_ = tuple(int(v) for v in feature_hw)

    def fit(self, images: list[np.ndarray], on_batch: ProgressFn | None = None) -> PatchDetector:
        """Build the memory bank from good images only; returns self."""
        images = _check_images(images, "good images")
        patches = self._embed_for_bank(images, on_batch)
        rows = [p.bank_rows(self.candidate_limit(), self.config.seed + i) for i, p in enumerate(patches)]
        self._set_bank(self._bank_from(torch.cat(rows)), len(images), patches[0].feats[0].shape[1:3])
        return self

    # -- scoring ----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "memory_bank_"):
            raise InspectorError("The anomaly detector has not been trained yet: fit it on good images first.")

    def score(self, images: list[np.ndarray], on_batch: ProgressFn | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        """Raw image scores (n,) and patch-distance maps (one (H', W') array per image: the whole
        image's, or its tiles' stitched over the image at the tiles' cell size; ignored cells 0)."""
        return self.score_all(images, on_batch).results()

    def score_all(self, images: list[np.ndarray], on_batch: ProgressFn | None = None) -> ImageMaps:
        """The images' inputs scored: `.results()` (raw scores, maps) as `score`, and `.embeddings()`
        (n, C), each image's patch features averaged over its cells and inputs (the familiarity guard's)."""
        self._check_fitted()
        images = _check_images(images)
        collected = ImageMaps(images)
        for pairs, feats in self._stream(images, 1, on_batch):
            maps = _distances(feats[:, 0], self.memory_bank_, self._bank_sq).cpu().numpy()
            pooled = feats[:, 0].mean(dim=(1, 2)).cpu().numpy()
            for (i, item), patch_map, embedding in zip(pairs, maps, pooled):
                collected.add(i, item, patch_map, embedding)
        return collected

    def _embed_shared(self, images: list[np.ndarray], on_batch: ProgressFn | None, ranks: Ranks) -> list[ImagePatches]:
        """`_embed_for_bank` of all the images; with several ranks each embeds its shard and all get every
        image (whole-image runs without regions; tiled images differ in size, so each rank embeds them all)."""
        if not ranks.active or self.config.tiling or not self.regions.empty:
            return self._embed_for_bank(images, on_batch)
        mine = ranks.shard(len(images))
        local = ([p.feats[0].cpu().numpy() for p in self._embed_for_bank([images[i] for i in mine], on_batch)]
                 if len(mine) else [])
        rows = ranks.gather_rows(np.stack(local) if local else np.zeros((0,), dtype=np.float32), len(images))
        gathered = []
        for image, feats in zip(images, rows):
            patches = ImagePatches(image.shape[:2])
            patches.add(torch.from_numpy(np.ascontiguousarray(feats)).to(self.device), (0, 0, 0), None)
            gathered.append(patches)
        return gathered

    def out_of_sample_scores(self, images: list[np.ndarray], folds: int = 5, seed: int = 0,
                             on_batch: ProgressFn | None = None, fit: bool = False,
                             ranks: Ranks = SINGLE, progress=NO_PROGRESS) -> np.ndarray:
        """Each good image scored by a bank built without it (k-fold; leave-one-out when n <= folds).

        Every image is embedded once (split over the ranks of a distributed training). With
        `fit=True` the final bank is also built from the same features (the detector is then
        fitted on all the images: no second embedding pass). `progress` (a ProgressTracker) follows
        the work planned by `fit_work`: the caller starts its "features" step, this the folds' coreset
        and calibration steps and the final "bank".
        """
        images = _check_images(images, "good images")
        n = len(images)
        if n < 2:
            raise InspectorError("At least 2 good images are needed to set a threshold: each good image is "
                                 "scored by a model trained on the others.")
        if folds < 2:
            raise InspectorError(f"The number of folds must be at least 2, got {folds}.")
        k = min(folds, n)
        order = np.random.default_rng(seed).permutation(n)
        fold_of = np.empty(n, dtype=np.int64)
        fold_of[order] = np.arange(n) % k
        patches = self._embed_shared(images, on_batch, ranks)
        rows = [p.bank_rows(self.candidate_limit(), self.config.seed + i) for i, p in enumerate(patches)]
        scores = np.empty(n, dtype=np.float64)
        for f in range(k):
            held = np.flatnonzero(fold_of == f)
            bank = self._bank_from(torch.cat([rows[i] for i in np.flatnonzero(fold_of != f)]), progress,
                                   "coreset", f"{f + 1}/{k}")
            bank_sq = (bank * bank).sum(1)
            progress.start("calibration", fold=f"{f + 1}/{k}", total=len(held), unit="images")
            for i in held:  # one image at a time: the same distances, and progress per image
                scores[i] = patches[int(i)].raw_score(bank, bank_sq)
                progress.advance(1)
        if fit:
            self._set_bank(self._bank_from(torch.cat(rows), progress, "bank", "final"), n,
                           patches[0].feats[0].shape[1:3])
            progress.note(bank_size=int(self.memory_bank_.shape[0]))
            guard = fit_guard(np.stack([p.embedding() for p in patches]), self.feature_blocks(), seed=seed)
            self.familiarity_ = None if guard is None else guard.to_dict()
        return scores

    def feature_blocks(self) -> list[int] | None:
        """The channels of each feature stage side by side in a patch feature (the guard's blocks)."""
        info = getattr(self.model, "feature_info", None) or []
        return [info[i]["num_chs"] for i in self.config.layers] if len(info) > max(self.config.layers) else None

    # -- state ------------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The memory bank and the backbone's weights: plain tensors, safetensors-ready."""
        self._check_fitted()
        tensors = {"memory_bank": self.memory_bank_.detach().cpu().contiguous()}  # the guard: state_config
        for name, value in self.model.state_dict().items():
            tensors[_BACKBONE_PREFIX + name] = value.detach().cpu().contiguous()
        return tensors

    def state_config(self) -> dict[str, Any]:
        """JSON-able: the config and what fitting learned besides the tensors."""
        self._check_fitted()
        return {"version": STATE_VERSION, "detector": self.config.to_dict(), "n_train": self.n_train_,
                "feature_hw": list(self.feature_hw_), "bank_size": int(self.memory_bank_.shape[0]),
                "feature_dim": int(self.memory_bank_.shape[1]), "preprocessing": self.preprocessing.to_dict(),
                "familiarity": getattr(self, "familiarity_", None)}

    @classmethod
    def from_state(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor],
                   device: torch.device | str = "cpu") -> PatchDetector:
        """Rebuild a fitted detector offline from `state_config()` and `state_tensors()`.

        The backbone's weights come from the tensors (never from the internet, never unpickled),
        so a stored model scores exactly as it did when it was trained.
        """
        if int(config.get("version", 0)) > STATE_VERSION:
            raise InspectorError("This anomaly model was saved by a newer version of the tool; update to load it.")
        if "memory_bank" not in tensors:
            raise InspectorError("This anomaly model is incomplete: its memory bank is missing.")
        detector = cls(DetectorConfig.from_dict(config["detector"]), device=device, pretrained=False)
        weights = {k[len(_BACKBONE_PREFIX):]: v for k, v in tensors.items() if k.startswith(_BACKBONE_PREFIX)}
        missing, unexpected = detector.model.load_state_dict(weights, strict=False)
        if missing or unexpected:
            raise InspectorError("This anomaly model's backbone weights do not match its backbone "
                                 f"{detector.config.backbone} ({len(missing)} missing, {len(unexpected)} unexpected).")
        bank = tensors["memory_bank"].to(detector.device, torch.float32)
        detector._set_bank(bank, config.get("n_train", 0), config.get("feature_hw", (0, 0)))
        detector.familiarity_ = config.get("familiarity")  # None: stored before the guard existed
        return detector
