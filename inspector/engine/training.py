"""`train()`: data in, a stored run out. Strategy-independent glue around Strategy.fit."""
from __future__ import annotations

import copy
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import timm
import torch

from ..augment import build_transform, resolve_preprocessing
from ..backbones import check_backbone_name
from ..config import TrainConfig
from ..data import LabeledDataset, discover_dataset, plan_validation, validate_dataset
from ..errors import InspectorError
from ..evaluation import evaluate_predictions, interval_warning
from ..models import architecture_recipe, build_model
from ..runs import Run, RunStore
from ..strategies import choose_strategy, create_strategy
from .callbacks import Callback, dispatch
from .context import FitContext
from .device import describe_device, prepare_model, resolve_device
from .events import CheckpointSaved, Event, TrainEnd, TrainFailed, TrainStart
from .loaders import ImageSet, load_image_set
from .loop import predict_probabilities


@dataclass
class TrainResult:
    run_id: str
    run_dir: Path
    status: str
    backbone: str
    strategy: str
    strategy_reason: str
    validation: str
    evaluation: dict[str, Any] | None
    train_seconds: float
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def val_accuracy(self) -> float | None:
        return self.evaluation["accuracy"] if self.evaluation else None

    def to_dict(self) -> dict[str, Any]:
        ev = self.evaluation or {}
        return {"run_id": self.run_id, "run_dir": str(self.run_dir), "status": self.status,
                "backbone": self.backbone, "strategy": self.strategy, "strategy_reason": self.strategy_reason,
                "validation": self.validation, "val_accuracy": ev.get("accuracy"),
                "val_accuracy_ci": ev.get("accuracy_ci"), "val_macro_f1": ev.get("macro_f1"),
                "val_accuracy_warning": interval_warning(ev.get("accuracy_ci")),
                "train_seconds": round(self.train_seconds, 2), "skipped": self.skipped}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def model_recipe(config: TrainConfig, classes: list[str], prep, strategy: str, model) -> dict[str, Any]:
    """What inference needs to rebuild the model without pickle (saved as model.json)."""
    return {"backbone": config.backbone, "num_classes": len(classes), "classes": classes,
            **architecture_recipe(model),
            "preprocessing": prep.to_dict(), "strategy": strategy, "timm_version": timm.__version__,
            "torch_version": torch.__version__}


def _as_dataset(data: LabeledDataset | str | Path | Iterable) -> LabeledDataset:
    return data if isinstance(data, LabeledDataset) else discover_dataset(data)


def _check_dataset(dataset: LabeledDataset) -> None:
    report = validate_dataset(dataset)
    if not report.ok:
        raise InspectorError(" ".join(f.message for f in report.errors))


def train(data: LabeledDataset | str | Path | Iterable, config: TrainConfig | None = None, *,
          runs_dir: str | Path | None = None, callbacks: Iterable[Callback] = (),
          stop_event: threading.Event | None = None) -> TrainResult:
    """Train a model on `data` (folder, zip, (path, label) pairs or a LabeledDataset) and store it.

    User mistakes raise InspectorError before a run folder is made. Failures during training are
    recorded in the run (status "failed") and re-raised. A stop request keeps the best model.
    """
    config = config or TrainConfig()
    started = time.perf_counter()
    dataset = _as_dataset(data)
    _check_dataset(dataset)
    check_backbone_name(config.backbone)
    device = resolve_device(config.device)
    seed_everything(config.seed)
    counts = dataset.counts()
    strategy_name, reason = (choose_strategy(min(counts.values()), len(counts), device.type)
                             if config.strategy == "auto" else (config.strategy, "chosen by you"))
    strategy = create_strategy(strategy_name)
    prep = resolve_preprocessing(config.backbone, config.image_size, config.resize_mode)
    model = build_model(config.backbone, len(dataset.classes), strategy.architecture, weights_path=config.weights_path,
                        symmetric=config.any_orientation)
    plan = plan_validation(dataset.labels, seed=config.seed, val_fraction=config.val_fraction,
                           max_folds=config.max_folds)

    resolved = config.replace(strategy=strategy_name, image_size=prep.image_size,
                              epochs=strategy.epochs(config))
    run = RunStore(runs_dir).create({**resolved.to_dict(), "requested_strategy": config.strategy,
                                     "strategy_reason": reason}, backbone=config.backbone,
                                    strategy=strategy_name, name=config.name)
    callbacks = list(callbacks)

    def emit(event: Event) -> None:
        run.append_event(event.to_dict())
        dispatch(callbacks, event)

    skipped = [{"path": s.path, "reason": s.reason} for s in dataset.skipped]
    try:
        images = load_image_set(dataset, prep.image_size)
        emit(TrainStart(run.run_id, backbone=config.backbone, strategy=strategy_name, strategy_reason=reason,
                        device=describe_device(device).label, classes=list(dataset.classes),
                        n_images=len(dataset), validation=plan.description, epochs=resolved.epochs))
        ctx = FitContext(run.run_id, resolved, device, list(dataset.classes), prep, emit,
                         stop_event or threading.Event())
        recipe = model_recipe(resolved, list(dataset.classes), prep, strategy_name, model)
        model = prepare_model(model, device)
        status, best_epoch, evaluated, predicted = _fit_with_plan(strategy, model, images, plan, ctx, run, recipe)
        evaluation = _evaluation(dataset, evaluated, predicted, plan.description)
        inference_ms = _inference_ms(model, images, prep, device) if best_epoch is not None else None
    except InspectorError as exc:
        _fail(run, emit, str(exc), user_error=True)
        raise
    except torch.OutOfMemoryError as exc:
        message = "Out of memory: use a smaller batch size, image size or backbone."
        _fail(run, emit, message, user_error=True)
        raise InspectorError(message) from exc
    except Exception as exc:
        _fail(run, emit, f"{type(exc).__name__}: {exc}", user_error=False)
        raise

    seconds = time.perf_counter() - started
    if evaluation:
        run.save_evaluation(evaluation)
    summary = {"val_accuracy": evaluation and evaluation["accuracy"],
               "val_accuracy_ci": evaluation and evaluation["accuracy_ci"],
               "val_macro_f1": evaluation and evaluation["macro_f1"], "train_seconds": round(seconds, 2),
               "n_images": len(dataset), "classes": list(dataset.classes), "validation": plan.description,
               "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
               "inference_ms_per_image": inference_ms, "best_epoch": best_epoch}
    run.update(status=status, summary=summary)
    emit(TrainEnd(run.run_id, status=status, val_accuracy=summary["val_accuracy"],
                  val_accuracy_ci=summary["val_accuracy_ci"], val_macro_f1=summary["val_macro_f1"],
                  train_seconds=seconds, best_epoch=best_epoch))
    return TrainResult(run.run_id, run.path, status, config.backbone, strategy_name, reason, plan.description,
                       evaluation, seconds, skipped)


def _fail(run: Run, emit, message: str, *, user_error: bool) -> None:
    try:
        run.update(status="failed", error=message)
        emit(TrainFailed(run.run_id, message=message, user_error=user_error))
    except OSError:
        pass  # the original error matters more than a failure to record it


def _fit_with_plan(strategy, model, images: ImageSet, plan, ctx: FitContext, run: Run,
                   recipe: dict) -> tuple[str, int | None, np.ndarray, np.ndarray]:
    """Hold-out: fit on the train part, evaluate on the rest. Cross-validation: fit the kept model
    on all images first (so a stop still leaves a model), then estimate accuracy over the folds.

    Returns (status, best epoch of the kept model, evaluated image indices, their predictions).
    """
    def checkpoint(m: torch.nn.Module, epoch: int, val_accuracy: float | None) -> None:
        run.save_model(m.state_dict(), recipe)
        ctx.emit(CheckpointSaved(ctx.run_id, epoch=epoch, val_accuracy=val_accuracy))

    initial = copy.deepcopy(model.state_dict())
    ctx.on_checkpoint = checkpoint
    none = np.zeros(0, dtype=int)
    if plan.mode == "holdout":
        train_idx, val_idx = plan.folds[0]
        outcome = strategy.fit(model, images.subset(train_idx), images.subset(val_idx), ctx)
        if outcome.best_epoch is None:
            return "stopped", None, none, none
        status = "stopped" if outcome.stopped else "completed"
        return status, outcome.best_epoch, np.asarray(val_idx), outcome.val_probabilities.argmax(1)

    outcome = strategy.fit(model, images, None, ctx)
    if outcome.stopped or not ctx.config.cross_validate:
        return "stopped" if outcome.stopped else "completed", outcome.best_epoch, none, none
    ctx.on_checkpoint = None
    evaluated, predicted = [], []
    for k, (train_idx, val_idx) in enumerate(plan.folds, start=1):
        fold_model = copy.deepcopy(model)
        fold_model.load_state_dict(initial)
        ctx.fold = f"{k}/{len(plan.folds)}"
        fold = strategy.fit(fold_model, images.subset(train_idx), images.subset(val_idx), ctx)
        if fold.val_probabilities is not None:
            evaluated.extend(val_idx)
            predicted.extend(fold.val_probabilities.argmax(1))
        if fold.stopped:  # the model is kept; the accuracy estimate covers the folds that ran
            break
    ctx.fold = "final"
    status = "stopped" if ctx.stop_event.is_set() else "completed"
    return status, outcome.best_epoch, np.asarray(evaluated, dtype=int), np.asarray(predicted, dtype=int)


def _evaluation(dataset: LabeledDataset, evaluated: np.ndarray, predicted: np.ndarray, method: str) -> dict | None:
    """Metrics over the evaluated images, plus each image's prediction (for paired comparisons)."""
    if not len(evaluated):
        return None
    truth = np.asarray(dataset.labels)[evaluated]
    report = evaluate_predictions(truth, predicted, dataset.classes, method=method)
    report["predictions"] = [{"path": str(dataset.samples[i].path), "label": dataset.classes[t],
                              "predicted": dataset.classes[p]} for i, t, p in zip(evaluated, truth, predicted)]
    return report


def _inference_ms(model: torch.nn.Module, images: ImageSet, prep, device: torch.device) -> float:
    """Milliseconds per image for the kept model, batch 32 (shown on the Compare page)."""
    sample = images.subset(range(min(32, len(images))))
    start = time.perf_counter()
    predict_probabilities(model, sample, build_transform(prep, "none"), device, batch_size=32)
    return round(1000 * (time.perf_counter() - start) / max(1, len(sample)), 2)
