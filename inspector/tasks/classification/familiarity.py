"""Training side of the familiarity guard (inspector/runtime/familiarity.py) for classification runs.

`Familiar(strategy)` runs any strategy and, after the kept model's fit, measures that model's embedding
(the features its head sees: models.pooled_features) of this line's images (the fit's training and
validation images and, in a transfer run, this line's unlabelled ones; never the other line's), fits
the guard on them and saves the model again with it in the recipe (recipe["familiarity"], read by
ClassificationTask.recipe). A frozen-feature strategy's embeddings are already in the feature cache; a
fine-tuned model's are one more pass over the images. The fold models of cross-validation keep no guard.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import numpy as np
import torch

from ...augment import build_inputs
from ...engine.context import FitContext, FitOutcome, TrainingStopped
from ...engine.features import FeatureCache, extract_features
from ...engine.loaders import ImageSet
from ...engine.progress import Work, tracker_of
from ...runtime.familiarity import fit_guard

GUARD_ATTRIBUTE = "familiarity_guard_"  # the fitted guard's to_dict() on the kept model (not a weight)


class Familiar:
    """A strategy whose kept model also carries a familiarity guard; everything else is the strategy's."""

    def __init__(self, strategy: Any) -> None:
        self.strategy = strategy

    def __getattr__(self, name: str) -> Any:
        if name == "strategy":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.strategy, name)

    def __repr__(self) -> str:
        return f"Familiar({self.strategy!r})"

    @property
    def frozen(self) -> bool:
        """Does the strategy keep the pretrained backbone (its embeddings are the cached frozen features)?"""
        from .strategies import LinearProbe

        return isinstance(self.strategy, LinearProbe)

    def work(self, model, n_train: int, n_val: int, config, *, fold: str = "final", cached: bool = False,
             n_source: int = 0, n_unlabeled: int = 0) -> list[Work]:
        """The strategy's planned work, then (the kept model's fit of a strategy that trains the backbone)
        one pass over this line's images for the guard."""
        work = self.strategy.work
        takes = {"n_source": n_source, "n_unlabeled": n_unlabeled} \
            if "n_source" in inspect.signature(work).parameters else {}
        steps = list(work(model, n_train, n_val, config, fold=fold, cached=cached, **takes))
        if fold == "final" and not self.frozen:
            views = 8 if getattr(model, "symmetric", False) else 1
            steps.append(Work("features", n_train + n_val + n_unlabeled, "images", cost=views, fold=fold))
        return steps

    def fit(self, model: torch.nn.Module, train: ImageSet, val: ImageSet | None, ctx: FitContext) -> FitOutcome:
        outcome = self.strategy.fit(model, train, val, ctx)
        if ctx.fold != "final" or outcome.stopped or outcome.best_epoch is None:
            return outcome
        try:
            features = self.embeddings(outcome.model, [train, val, ctx.unlabeled], ctx)
        except TrainingStopped:
            return outcome  # the model is kept as it is, without a guard
        guard = fit_guard(features, embedding_blocks(outcome.model), seed=ctx.config.seed)
        if guard is not None:
            setattr(outcome.model, GUARD_ATTRIBUTE, guard.to_dict())
            ctx.checkpoint(outcome.model, outcome.best_epoch, None)  # saved again, the guard in its recipe
        return outcome

    def embeddings(self, model: torch.nn.Module, parts: list[ImageSet | None], ctx: FitContext) -> np.ndarray:
        """The kept model's embeddings of every image of the parts given, one row each."""
        rows = [self._embeddings(model, images, ctx) for images in parts if images is not None and len(images)]
        return np.concatenate(rows) if rows else np.zeros((0, 0), dtype=np.float32)

    def _embeddings(self, model: torch.nn.Module, images: ImageSet, ctx: FitContext) -> np.ndarray:
        if self.frozen:
            # The linear probe's own, cached by its fit: no second "features" step in the run's progress.
            return self.strategy.features(model, images, dataclasses.replace(ctx, progress=None))
        # A trained backbone: its features are its own, never cached under the pretrained backbone's key.
        return extract_features(model, images, build_inputs(ctx.preprocessing),
                                model_key="familiarity", device=ctx.device, cache=FeatureCache(0),
                                progress=tracker_of(ctx), fold=ctx.fold,
                                batch_size=8 if getattr(model, "symmetric", False) else 16)


def embedding_blocks(model: torch.nn.Module) -> list[int] | None:
    """The widths of the blocks side by side in the model's embedding: a multiscale classifier's pooled
    stages and final features; None (one block) for any other model."""
    from ...models import MultiScaleClassifier

    if not isinstance(model, MultiScaleClassifier):
        return None
    backbone = model.backbone
    return [backbone.feature_info[i]["num_chs"] for i in model.stage_indices] + [backbone.num_features]


def guard_recipe(model: torch.nn.Module) -> dict[str, Any]:
    """The recipe's `familiarity` entry of a kept model that carries a guard; empty for any other."""
    guard = getattr(model, GUARD_ATTRIBUTE, None)
    return {"familiarity": guard} if guard else {}
