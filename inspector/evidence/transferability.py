"""Which pretrained backbone to start from? LogME on the user's own images, in seconds.

LogME (K. You, Y. Liu, J. Wang, M. Long, "LogME: Practical Assessment of Pre-trained Models for
Transfer Learning", ICML 2021) scores frozen features by the log marginal likelihood (evidence)
of a Bayesian linear model from the features to each class's one-hot target, with the prior
precision alpha and noise precision beta set by MacKay's fixed-point iteration (the paper's
Algorithm 1), averaged over classes and divided by the number of images. Higher is better; it
needs no training and no hyper-parameter, so one pass of feature extraction per backbone suffices.

Implemented here from the paper with numpy only: one SVD of the n x d feature matrix, after which
every iteration costs O(min(n, d)).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..errors import InspectorError

MAX_ITERATIONS = 100
TOLERANCE = 1e-3  # relative change of alpha / beta that ends the iteration


@dataclass(frozen=True)
class Evidence:
    """The per-image log evidence of one target and the fitted precisions."""

    log_evidence: float
    alpha: float
    beta: float
    iterations: int


def _evidence_one(u_t_y: np.ndarray, y_norm2: float, sigma2: np.ndarray, n: int, d: int) -> Evidence:
    """Maximise the evidence of y ~ N(F w, 1/beta), w ~ N(0, I/alpha) over alpha, beta.

    In the basis of F's singular vectors (F = U diag(s) V', sigma2 = s**2, z = U'y): the posterior
    mean m = beta A^-1 F'y with A = alpha I + beta F'F has |m|^2 = sum (beta s z / (alpha + beta s^2))^2,
    the residual |y - F m|^2 = |y|^2 - |z|^2 + sum (alpha z / (alpha + beta s^2))^2, and
    gamma = sum beta s^2 / (alpha + beta s^2) is the effective number of parameters. The fixed
    point is alpha = gamma / |m|^2, beta = (n - gamma) / |y - F m|^2 (the paper's Algorithm 1).
    """
    z2 = u_t_y ** 2
    outside = max(y_norm2 - float(z2.sum()), 0.0)  # the part of y no feature direction reaches
    alpha, beta = 1.0, 1.0
    iterations = 0
    for iterations in range(1, MAX_ITERATIONS + 1):
        denom = alpha + beta * sigma2
        gamma = float((beta * sigma2 / denom).sum())
        m2 = float((beta ** 2 * sigma2 * z2 / denom ** 2).sum())
        residual = outside + float((alpha ** 2 * z2 / denom ** 2).sum())
        new_alpha = gamma / max(m2, 1e-12)
        new_beta = (n - gamma) / max(residual, 1e-12)
        done = abs(new_alpha - alpha) <= TOLERANCE * alpha and abs(new_beta - beta) <= TOLERANCE * beta
        alpha, beta = new_alpha, new_beta
        if done:
            break
    denom = alpha + beta * sigma2
    m2 = float((beta ** 2 * sigma2 * z2 / denom ** 2).sum())
    residual = outside + float((alpha ** 2 * z2 / denom ** 2).sum())
    log_det = float(np.log(denom).sum()) + (d - sigma2.size) * math.log(alpha)  # log |A|
    evidence = (d / 2 * math.log(alpha) + n / 2 * math.log(beta) - beta / 2 * residual - alpha / 2 * m2
                - log_det / 2 - n / 2 * math.log(2 * math.pi))
    return Evidence(evidence / n, alpha, beta, iterations)


def logme(features: np.ndarray, labels: Sequence[int]) -> float:
    """LogME score of frozen `features` (n x d) for classification `labels`: higher transfers better.

    The mean over classes of the per-image log evidence of each class's one-hot target.
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if f.ndim != 2 or len(f) != len(y) or len(y) < 2:
        raise ValueError("features must be (n, d) with one label per row and n >= 2")
    if not np.isfinite(f).all():
        raise InspectorError("The features contain NaN or infinite values; LogME cannot score them.")
    from threadpoolctl import threadpool_limits

    n, d = f.shape
    with threadpool_limits(1):  # a small SVD: BLAS threads only contend on a busy CPU
        u, s, _ = np.linalg.svd(f, full_matrices=False)
    keep = s > s.max() * max(n, d) * np.finfo(float).eps if s.size else s > 0
    u, sigma2 = u[:, keep], s[keep] ** 2
    scores = []
    for c in np.unique(y):
        target = (y == c).astype(np.float64)
        scores.append(_evidence_one(u.T @ target, float(target @ target), sigma2, n, d).log_evidence)
    return float(np.mean(scores))


@dataclass(frozen=True)
class FeatureRank:
    """One candidate of `rank_features`: the caller's description of it, its LogME, its place (1 = best)."""

    candidate: Any
    logme: float
    rank: int


@dataclass(frozen=True)
class BackboneRank:
    """One backbone x input size of `rank_backbones`.

    `to_dict()` is one row of `inspector rank-backbones --json`'s "ranking" (the same keys, in this order).
    """

    backbone: str  # timm name
    image_size: int  # input size in pixels
    logme: float  # per-image log evidence: higher transfers better
    n_images: int
    n_features: int
    seconds: float  # feature extraction + LogME on this machine, rounded to 0.01 s
    rank: int | None = None  # 1 = best; None in the row `on_candidate` gets, before all are scored

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rank_features(candidates: Iterable[tuple[Any, np.ndarray]], labels: Sequence[int]) -> list[FeatureRank]:
    """LogME of each (description, n x d features) pair for `labels`, best first, ranked from 1.

    Ties keep the candidates' order.
    """
    scored = [(candidate, logme(features, labels)) for candidate, features in candidates]
    scored.sort(key=lambda pair: pair[1], reverse=True)  # stable: ties keep their order
    return [FeatureRank(candidate, score, rank) for rank, (candidate, score) in enumerate(scored, start=1)]


def offline_backbones() -> list[str]:
    """Catalogue backbones whose weights are here without a network (bundled or cached)."""
    from ..backbones import list_backbones

    return [b.spec.name for b in list_backbones() if b.available_offline]


def rank_backbones(data, backbones: Sequence[str] | None = None, image_sizes: Sequence[int | None] | None = None,
                   *, symmetric: bool = False, device: str = "auto", cache_dir=None,
                   on_candidate: Callable[[BackboneRank], None] | None = None) -> list[BackboneRank]:
    """Rank backbones x input sizes by LogME on the images of `data`, best first.

    Args:
        data: a folder of class sub-folders, a .zip, or a LabeledDataset.
        backbones: timm names (default: the catalogue's backbones usable offline).
        image_sizes: input sizes in pixels; None in the list (the default) is each backbone's own.
        symmetric: average features over the 8 flips and quarter turns as the linear probe does
            (8x slower; the default single view keeps this "in seconds", and is what the ranking
            measured in docs/BENCHMARKS.md, "Backbone ranking by LogME", used).
        on_candidate: called with each row as it is scored, before it is ranked (progress for the app).

    Returns:
        One BackboneRank per candidate, best first (rank 1 = the highest LogME; ties keep the order tried).

    Raises:
        InspectorError: fewer than two classes, no backbone usable offline, or features LogME cannot score.
    """
    from ..data import LabeledDataset, discover_dataset
    from .features import frozen_features

    dataset = data if isinstance(data, LabeledDataset) else discover_dataset(data)
    if len(dataset.classes) < 2:
        raise InspectorError("Ranking backbones needs labeled images of at least two classes.")
    backbones = list(backbones) if backbones else offline_backbones()
    if not backbones:
        raise InspectorError("No backbone is available offline to rank; name some with --backbones.")
    rows = []
    for backbone in backbones:
        for size in (list(image_sizes) if image_sizes else [None]):
            start = time.perf_counter()
            feats = frozen_features(dataset, backbone, size, symmetric=symmetric, device=device, cache_dir=cache_dir)
            row = BackboneRank(backbone, feats.image_size, logme(feats.features, feats.labels), len(feats.labels),
                               int(feats.features.shape[1]), round(time.perf_counter() - start, 2))
            rows.append(row)
            if on_candidate:
                on_candidate(row)
    rows.sort(key=lambda row: row.logme, reverse=True)  # stable: ties keep the order tried
    return [replace(row, rank=rank) for rank, row in enumerate(rows, start=1)]
