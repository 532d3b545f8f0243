"""Multi-task learning across two lines (the founding document's 3.3.3): one shared representation, one
classification head per line, trained together.

The two lines' labelled images train at once: this line's head on this line's labelled images, the other
line's (source) head on the source's, the loss being the sum of the two lines' mean cross-entropies. What
the lines share:

- hard sharing: both heads read the same learned projection of the features (rank `RANK`, started from
  the principal directions of both lines' images), so the few images of this line are classified in a
  representation the many images of the other line shaped;
- soft sharing (Evgeniou & Pontil 2004): this line's head is the source head plus an offset pulled
  toward zero, so a class this line has few or no labelled images of keeps the other line's view of it,
  and with no labelled image at all this line's head *is* the source head (on this line's scaling).

Each line's features are first standardised by that line's own mean and spread (as in alignment.py).

**Frozen multiscale features, not a fine-tuned backbone.** Measured on the 2-core development CPU
(tf_efficientnet_lite0, 96 px, batch of 8): a training step through the backbone took 1.8-7 s against
0.12-0.19 s for a forward pass, i.e. 15-40x; the contract test's few images over 4 epochs, 3 fits and 2
runs would take minutes, and a real line's images at 224 px with the symmetric views hours. On frozen
features (computed once, cached across runs and folds) the joint training of the projection and both
heads is a full-batch gradient loop of under a second (0.7 s for 48 images of 1752 features, same CPU). Since the projection is linear, each
line's head folds into one linear layer on the raw features: this line's becomes the model's ordinary
classifier (predict, export and serve need nothing new, export parity holds), and the source head is
stored beside it in the same weights (`predictor.SOURCE_HEAD_KEYS`, recipe["heads"]).

The kept model's fit also runs the negative-transfer guard (guard.decide_method: source-only,
target-only and this method on the same folds of this line's labelled images, or a label-free score)
and measures the shift between the lines; both go to the run's summary (`transfer`, `shift`).
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ....engine.context import FitOutcome, TrainingStopped
from ....engine.progress import tracker_of
from ..linear import LinearHead
from ..predictor import SOURCE_HEAD_MODULE
from ..strategies import _set_head, register_strategy
from .alignment import DomainFeatures, Scaling
from .guard import decide_method
from .strategies import FeatureTransfer, transfer_figures

RANK = 32  # width of the shared projection (fewer when there are fewer images or features)
STEPS = 200  # full-batch optimiser steps
LR = 0.05
OFFSET_PENALTY = 1.0  # pull of this line's head toward the source head (soft sharing)
WEIGHT_DECAY = 1e-3  # on the heads
PROJECTION_PENALTY = 1e-2  # pull of the projection toward its start (the principal directions)
LABEL_SMOOTHING = 0.1  # as the gradient loop's: keeps the probabilities from being overconfident
RELATIVE_STD_FLOOR = 0.1  # a feature's spread counts as at least this fraction of the line's median spread
SINGLE_THREAD_ROWS = 2000  # images of both lines up to which the loop runs on one thread


@dataclass
class LineHeads:
    """Both lines' heads, each acting on its own line's raw features (scaling and projection folded in)."""

    target: LinearHead
    source: LinearHead


def _scaling(rows: np.ndarray) -> Scaling:
    """A line's standardisation, its spreads floored at a fraction of the line's typical spread: a feature
    (nearly) constant over this line's few images but varying on the other line's would otherwise meet a
    weight divided by ~0 in the folded head, and a new image's slightest change there would swamp its
    logits (seen: 0.33 accuracy on new parts with the plain floor of alignment.Scaling)."""
    scaling = Scaling.of(rows)
    return Scaling(scaling.mean, np.maximum(scaling.std, RELATIVE_STD_FLOOR * float(np.median(scaling.std))))


def _fold(weight: np.ndarray, bias: np.ndarray, scaling: Scaling) -> LinearHead:
    """logits = W (x - mu) / sigma + b as one linear layer on raw features x."""
    folded = weight / scaling.std
    return LinearHead(folded, bias - folded @ scaling.mean, 1.0)


@contextmanager
def _threads_for(rows: int) -> Iterator[None]:
    """One thread for a small problem: its matrices are too small to share out, and on the busy 2-core
    development CPU two threads made the loop 14x slower (9.6 s against 0.7 s for 48 images)."""
    before = torch.get_num_threads()
    if rows <= SINGLE_THREAD_ROWS:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_line_heads(data: DomainFeatures, seed: int, on_step: Callable[[], None] | None = None) -> LineHeads:
    """Train the shared projection and both heads together (the module docstring); deterministic for the
    same data (no random initialisation). `on_step` is called after each optimiser step (a stop check)."""
    with _threads_for(len(data.source) + len(data.target_all)):
        return _fit_line_heads(data, seed, on_step)


def _fit_line_heads(data: DomainFeatures, seed: int, on_step: Callable[[], None] | None) -> LineHeads:
    del seed  # nothing random: the projection starts from the principal directions, the heads from zero
    source_scaling = _scaling(data.source)
    # No image of this line at all: its head is the source head as it is.
    target_scaling = _scaling(data.target_all) if len(data.target_all) else source_scaling
    as_tensor = lambda rows: torch.as_tensor(rows, dtype=torch.float64)  # noqa: E731
    xs, xt = as_tensor(source_scaling(data.source)), as_tensor(target_scaling(data.target))
    ys = torch.as_tensor(data.source_labels, dtype=torch.long)
    yt = torch.as_tensor(data.target_labels, dtype=torch.long)
    pooled = torch.cat([xs, as_tensor(target_scaling(data.target_all))])
    centred = pooled - pooled.mean(0)
    _, singular, vt = torch.linalg.svd(centred, full_matrices=False)
    keep = singular > singular[0] * 1e-6 if len(singular) else singular > 0
    rank = int(min(RANK, int(keep.sum())))
    # Whitened start: each projected component has unit variance over the pooled images.
    start = vt[:rank] * (np.sqrt(max(len(pooled) - 1, 1)) / singular[:rank])[:, None]
    k = data.n_classes
    projection = start.clone().requires_grad_(True)
    source_weight = torch.zeros(k, rank, dtype=torch.float64, requires_grad=True)
    source_bias = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    offset_weight = torch.zeros(k, rank, dtype=torch.float64, requires_grad=True)
    offset_bias = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    params = [projection, source_weight, source_bias, offset_weight, offset_bias]
    optimiser = torch.optim.Adam(params, lr=LR)
    has_target = len(yt) > 0
    for _ in range(STEPS):
        optimiser.zero_grad()
        loss = F.cross_entropy(xs @ projection.T @ source_weight.T + source_bias, ys, label_smoothing=LABEL_SMOOTHING)
        if has_target:
            target_weight, target_bias = source_weight + offset_weight, source_bias + offset_bias
            loss = loss + F.cross_entropy(xt @ projection.T @ target_weight.T + target_bias, yt,
                                          label_smoothing=LABEL_SMOOTHING)
        loss = (loss + OFFSET_PENALTY * ((offset_weight ** 2).sum() + (offset_bias ** 2).sum())
                + WEIGHT_DECAY * (source_weight ** 2).sum()
                + PROJECTION_PENALTY * ((projection - start) ** 2).sum() / rank)
        loss.backward()
        optimiser.step()
        if on_step:
            on_step()
    with torch.no_grad():
        shared = projection.detach()
        source = (source_weight @ shared).numpy(), source_bias.detach().numpy()
        target = ((source_weight + offset_weight) @ shared).numpy(), (source_bias + offset_bias).detach().numpy()
    return LineHeads(_fold(*target, target_scaling), _fold(*source, source_scaling))


def target_head(data: DomainFeatures, seed: int) -> LinearHead:
    """This line's head alone (what the guard measures against the baselines)."""
    return fit_line_heads(data, seed).target


def with_source_head(model: torch.nn.Module, head: LinearHead) -> torch.nn.Module:
    """The kept model with the source head as an extra module (saved in the same weights under
    SOURCE_HEAD_KEYS). A twin of `model` sharing all its parameters and buffers: `model` itself stays
    shaped as built (the trainer's cross-validation folds reload its initial weights strictly)."""
    shared = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    twin = copy.deepcopy(model, memo=dict(shared))
    classifier = model.get_classifier()
    layer = torch.nn.Linear(classifier.in_features, classifier.out_features).to(classifier.weight)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(head.weight).to(layer.weight))
        layer.bias.copy_(torch.from_numpy(head.bias).to(layer.bias))
    twin.add_module(SOURCE_HEAD_MODULE, layer)
    return twin


@register_strategy
class MultiTask(FeatureTransfer):
    name = "multi_task"
    summary = ("Learns this line and the other line together: one shared view of the images, one classifier "
               "per line; the other line's classifier is kept too (predict --head source).")

    def fit(self, model, train, val, ctx):
        try:
            data, x_val = self.domain_features(model, train, val, ctx)
        except TrainingStopped:
            return FitOutcome(model, None, None, stopped=True)
        tracker = tracker_of(ctx)
        figures = None
        if ctx.fold == "final":
            tracker.start("adaptation", fold=ctx.fold, total=1, unit="steps")
            decision = decide_method(data, self.name, target_head, ctx.config.seed, on_step=ctx.check_stop)
            figures = transfer_figures(decision, data, ctx.classes, ctx.config.seed)
            tracker.advance(1)
        tracker.start("head", fold=ctx.fold, total=STEPS, unit="steps")

        def step() -> None:
            ctx.check_stop()
            tracker.advance(1)

        heads = fit_line_heads(data, ctx.config.seed, on_step=step)
        _set_head(model, heads.target)
        kept = with_source_head(model, heads.source) if ctx.fold == "final" else model
        return self.outcome(kept, heads.target, data, x_val, val, ctx, figures)
