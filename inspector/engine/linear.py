"""Multinomial logistic regression on frozen features (the linear probe's head).

Fitted with full-batch L-BFGS on numpy arrays: exact, fast (milliseconds for a few hundred images),
and it reports per-epoch curves like every other strategy. The L2 strength is chosen by
cross-validation on the training images only, with all views of one image in the same fold.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.optimize import minimize
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


def _loss_and_grad(params: np.ndarray, x: np.ndarray, onehot: np.ndarray, l2: float) -> tuple[float, np.ndarray]:
    """Mean cross-entropy + l2/2 |W|^2 of a softmax layer, and its gradient (params = [W | b])."""
    n_classes = onehot.shape[1]
    wb = params.reshape(n_classes, x.shape[1] + 1)
    weight, bias = wb[:, :-1], wb[:, -1]
    logits = x @ weight.T + bias
    logits -= logits.max(1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    loss = -(onehot * log_probs).sum() / len(x) + 0.5 * l2 * (weight ** 2).sum()
    delta = (np.exp(log_probs) - onehot) / len(x)
    grad = np.concatenate([delta.T @ x + l2 * weight, delta.sum(0)[:, None]], axis=1)
    return float(loss), grad.ravel()


def _fit_softmax(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float, iterations: int,
                 on_epoch: Callable[[int, float, np.ndarray, np.ndarray], None] | None = None,
                 epochs: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """L-BFGS (scipy, float64 numpy: milliseconds here) in `epochs` warm-started chunks."""
    onehot = np.eye(n_classes)[y]
    params = np.zeros(n_classes * (x.shape[1] + 1))
    for epoch in range(1, epochs + 1):
        result = minimize(_loss_and_grad, params, args=(x, onehot, l2), jac=True, method="L-BFGS-B",
                          options={"maxiter": max(1, iterations // epochs)})
        params = result.x
        if on_epoch:
            wb = params.reshape(n_classes, -1)
            on_epoch(epoch, float(result.fun), wb[:, :-1], wb[:, -1])
    wb = params.reshape(n_classes, -1)
    return wb[:, :-1], wb[:, -1]


def choose_l2(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_classes: int,
              seed: int, folds: int = 3) -> float:
    """The L2 strength with the best cross-validated log-loss on the training images."""
    min_count = np.bincount(labels[np.unique(groups, return_index=True)[1]]).min()
    folds = int(min(folds, min_count))
    if folds < 2:
        return 1e-2
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    splits = list(splitter.split(features, labels, groups))
    scores = []
    for l2 in L2_GRID:
        loss = 0.0
        for train_idx, val_idx in splits:
            w, b = _fit_softmax(features[train_idx], labels[train_idx], n_classes, l2, iterations=100)
            loss += _log_loss(features[val_idx] @ w.T + b, labels[val_idx])
        scores.append(loss)
    return L2_GRID[int(np.argmin(scores))]


def fit_linear_head(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_classes: int, *,
                    seed: int, epochs: int = 20, iterations: int = 200,
                    on_epoch: Callable[[int, float, LinearHead], None] | None = None) -> LinearHead:
    """Standardise, choose L2 by grouped CV, fit; the returned head works on raw features."""
    scaler = Standardiser(features)
    x = scaler(features)
    # With fewer images than features, the L2-optimal weights lie in the span of the training
    # rows: fitting in that basis is exact and turns 1280 unknowns per class into at most n.
    basis = np.linalg.svd(x, full_matrices=False)[2].T  # (n_features, rank)
    x = x @ basis
    l2 = choose_l2(x, labels, groups, n_classes, seed)

    def to_head(weight: np.ndarray, bias: np.ndarray) -> LinearHead:
        # Back to feature space, then fold the standardisation in: W' = W / std, b' = b - W' . mean.
        w = (weight @ basis.T) / scaler.std
        return LinearHead(w, bias - w @ scaler.mean, l2)

    callback = (lambda epoch, loss, w, b: on_epoch(epoch, loss, to_head(w, b))) if on_epoch else None
    weight, bias = _fit_softmax(x, labels, n_classes, l2, iterations=iterations, on_epoch=callback,
                                epochs=epochs)
    return to_head(weight, bias)


def _log_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    logits = logits - logits.max(1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())
