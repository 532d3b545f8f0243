"""Fitting with a validation plan: the trainer's side of the strategy contract.

A strategy only fits. Around its `fit` this module makes a fresh context per fold, saves the kept
model (through a sink the caller provides; the engine writes no files itself), rejects a completed
fit without a model, and fits the final model on every image when validation is cross-validated.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import torch

from ..errors import InspectorError
from .context import FitContext, FitOutcome, TrainingStopped
from .distributed import SINGLE
from .loaders import ImageSet
from .progress import Work

SaveModel = Callable[[torch.nn.Module, int, "float | None"], None]  # (model, epoch, val_accuracy)


class Fittable(Protocol):
    name: str

    def fit(self, model: torch.nn.Module, train: ImageSet, val: ImageSet | None, ctx: FitContext) -> FitOutcome:
        ...


@dataclass(frozen=True)
class PlanResult:
    """What fitting with a plan produced: the kept model's status and the validation outputs."""

    status: str  # completed | stopped
    best_epoch: int | None  # None: no model (stopped before the first epoch ended)
    evaluated: np.ndarray  # image indices with an out-of-sample output
    outputs: np.ndarray  # one row per evaluated image (class probabilities, or a task's scores)
    figures: dict | None = None  # the kept fit's own figures (FitOutcome.figures)


class _KeptModelSaver:
    """Saves the kept model: on each improvement during the fit, and once after it unless the
    best epoch was already saved (so every fitted model is on disk exactly once per epoch)."""

    def __init__(self, save: SaveModel) -> None:
        self.save, self.saved_epoch = save, None

    def __call__(self, model: torch.nn.Module, epoch: int, val_accuracy: float | None) -> None:
        self.save(model, epoch, val_accuracy)
        self.saved_epoch = epoch

    def after_fit(self, outcome: FitOutcome) -> None:
        if outcome.best_epoch is not None and outcome.best_epoch != self.saved_epoch:
            self(outcome.model, outcome.best_epoch, None)


def _fit(strategy: Fittable, model: torch.nn.Module, train: ImageSet, val: ImageSet | None, ctx: FitContext,
         saver: _KeptModelSaver | None = None) -> FitOutcome:
    """strategy.fit, with the contract enforced: a stop may surface as TrainingStopped (then the last
    checkpoint, if any, is the kept model), and a completed fit must return a model."""
    try:
        outcome = strategy.fit(model, train, val, ctx)
    except TrainingStopped:
        return FitOutcome(model, saver.saved_epoch if saver else None, None, stopped=True)
    if outcome.best_epoch is None and not outcome.stopped:
        raise InspectorError(f"Strategy '{strategy.name}' finished without a model; this is a bug in the "
                             "strategy (its fit must return the fitted model and its best epoch).")
    return outcome


def plan_work(strategy: Fittable, model: torch.nn.Module, plan, config, *, cross_validate: bool = True,
              n_source: int = 0, n_unlabeled: int = 0) -> list[Work]:
    """The planned work of `fit_with_plan` (engine/progress.py), in the order it runs: the kept model's
    fit, then the cross-validation folds (whose frozen features are cached by then). Each fit's work
    comes from the strategy's `work(model, n_train, n_val, config, fold=, cached=)`, given also
    `n_source=` and `n_unlabeled=` (another line's images and this line's unlabelled ones, which every
    fit sees) when it takes them; a strategy without `work` counts as one step of one pass per image."""
    others = {"n_source": n_source, "n_unlabeled": n_unlabeled} if n_source or n_unlabeled else {}

    def fit_work(n_train: int, n_val: int, fold: str, cached: bool) -> list[Work]:
        work = getattr(strategy, "work", None)
        if work is None:
            return [Work("training", 1, "steps", cost=float(n_train + n_val), fold=fold)]
        takes = others if others and "n_source" in inspect.signature(work).parameters else {}
        return list(work(model, n_train, n_val, config, fold=fold, cached=cached, **takes))

    if plan.mode == "holdout":
        train_idx, val_idx = plan.folds[0]
        return fit_work(len(train_idx), len(val_idx), "final", False)
    n = len(plan.folds[0][0]) + len(plan.folds[0][1])
    steps = fit_work(n, 0, "final", False)
    if cross_validate:
        k = len(plan.folds)
        for i, (train_idx, val_idx) in enumerate(plan.folds, start=1):
            steps += fit_work(len(train_idx), len(val_idx), f"{i}/{k}", True)
    return steps


def fit_with_plan(strategy: Fittable, model: torch.nn.Module, images: ImageSet, plan, ctx: FitContext,
                  save: SaveModel, *, cross_validate: bool = True) -> PlanResult:
    """Hold-out: fit on the train part, evaluate on the rest. Cross-validation: fit the kept model on
    every image first (so a stop still leaves a model), then estimate accuracy over the folds."""
    saver = _KeptModelSaver(save)
    kept_ctx = dataclasses.replace(ctx, fold="final", checkpoint_sink=saver)
    none = np.zeros(0, dtype=int)
    if plan.mode == "holdout":
        train_idx, val_idx = plan.folds[0]
        val = images.subset(val_idx) if len(val_idx) else None
        outcome = _fit(strategy, model, images.subset(train_idx), val, kept_ctx, saver)
        saver.after_fit(outcome)
        status = "stopped" if outcome.stopped else "completed"
        if outcome.best_epoch is None or outcome.val_probabilities is None:
            return PlanResult(status, outcome.best_epoch, none, np.zeros((0, 0)), outcome.figures)
        return PlanResult(status, outcome.best_epoch, np.asarray(val_idx), outcome.val_probabilities, outcome.figures)

    initial = copy.deepcopy(model.state_dict()) if cross_validate else None  # each fold starts from here
    outcome = _fit(strategy, model, images, None, kept_ctx, saver)
    saver.after_fit(outcome)
    if outcome.stopped or not cross_validate:
        return PlanResult("stopped" if outcome.stopped else "completed", outcome.best_epoch, none, np.zeros((0, 0)),
                          outcome.figures)
    # With several ranks the folds run side by side, one process each (no collectives inside a
    # fold), and their predictions are gathered: k folds on N ranks take about k/N fold times.
    mine = set(ctx.ranks.shard(len(plan.folds)).tolist())
    fold_results = []
    for k, (train_idx, val_idx) in enumerate(plan.folds, start=1):
        if k - 1 not in mine:
            continue
        fold_model = copy.deepcopy(model)
        fold_model.load_state_dict(initial)
        fold_ctx = dataclasses.replace(ctx.for_fold(f"{k}/{len(plan.folds)}"), ranks=SINGLE)
        fold = _fit(strategy, fold_model, images.subset(train_idx), images.subset(val_idx), fold_ctx)
        if fold.val_probabilities is not None:
            fold_results.append((k, np.asarray(val_idx), fold.val_probabilities))
        if fold.stopped:  # the model is kept; the estimate covers the folds that ran
            break
    fold_results = sorted((r for part in ctx.ranks.gather_objects(fold_results) for r in part), key=lambda r: r[0])
    evaluated = [i for _, val_idx, _ in fold_results for i in val_idx]
    outputs = [probs for _, _, probs in fold_results]
    status = "stopped" if ctx.stop_event.is_set() else "completed"
    return PlanResult(status, outcome.best_epoch, np.asarray(evaluated, dtype=int),
                      np.concatenate(outputs) if outputs else np.zeros((0, 0)), outcome.figures)
