"""Multinomial logistic regression on frozen features (the linear probe's head).

Fitted with full-batch L-BFGS in torch: exact, fast (milliseconds for a few hundred images),
and it reports per-epoch curves like every other strategy. The L2 strength is chosen by
cross-validation on the training images only, with all views of one image in the same fold.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import StratifiedGroupKFold

L2_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


@dataclass
class LinearHead:
    weight: np.ndarray  # (n_classes, n_features), acting on raw (unstandardised) features
    bias: np.ndarray
    l2: float

    def logits(self, features: np.ndarray) -> np.ndarray:
        return features @ self.weight.T + self.bias


class Standardiser:
    def __init__(self, features: np.ndarray) -> None:
        self.mean = features.mean(0)
        self.std = features.std(0) + 1e-6

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return (features - self.mean) / self.std


def _lbfgs(x: torch.Tensor, y: torch.Tensor, n_classes: int, l2: float, iterations: int,
           on_epoch: Callable[[int, float, torch.Tensor, torch.Tensor], None] | None = None,
           epochs: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    weight = torch.zeros(n_classes, x.shape[1], dtype=x.dtype, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=x.dtype, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1, max_iter=max(1, iterations // epochs),
                                  history_size=20, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, y) + 0.5 * l2 * (weight ** 2).sum()
        loss.backward()
        return loss

    for epoch in range(1, epochs + 1):
        loss = optimizer.step(closure)
        if on_epoch:
            on_epoch(epoch, float(loss.detach()), weight.detach(), bias.detach())
    return weight.detach(), bias.detach()


def choose_l2(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_classes: int,
              seed: int, folds: int = 3) -> float:
    """The L2 strength with the best cross-validated log-loss on the training images."""
    min_count = np.bincount(labels[np.unique(groups, return_index=True)[1]]).min()
    folds = int(min(folds, min_count))
    if folds < 2:
        return 1e-2
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    splits = list(splitter.split(features, labels, groups))
    x_all, y_all = torch.from_numpy(features).float(), torch.from_numpy(labels)
    scores = []
    for l2 in L2_GRID:
        loss = 0.0
        for train_idx, val_idx in splits:
            w, b = _lbfgs(x_all[train_idx], y_all[train_idx], n_classes, l2, iterations=60)
            loss += float(F.cross_entropy(x_all[val_idx] @ w.T + b, y_all[val_idx]))
        scores.append(loss)
    return L2_GRID[int(np.argmin(scores))]


def fit_linear_head(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_classes: int, *,
                    seed: int, epochs: int = 20, iterations: int = 200,
                    on_epoch: Callable[[int, float, LinearHead], None] | None = None) -> LinearHead:
    """Standardise, choose L2 by grouped CV, fit; the returned head works on raw features."""
    scaler = Standardiser(features)
    x = scaler(features)
    l2 = choose_l2(x, labels, groups, n_classes, seed)

    def to_head(weight: torch.Tensor, bias: torch.Tensor) -> LinearHead:
        # Fold the standardisation into the layer: W' = W / std, b' = b - W' . mean.
        w = weight.double().numpy() / scaler.std
        return LinearHead(w, bias.double().numpy() - w @ scaler.mean, l2)

    callback = (lambda epoch, loss, w, b: on_epoch(epoch, loss, to_head(w, b))) if on_epoch else None
    weight, bias = _lbfgs(torch.from_numpy(x).float(), torch.from_numpy(labels), n_classes, l2,
                          iterations=iterations, on_epoch=callback, epochs=epochs)
    return to_head(weight, bias)
