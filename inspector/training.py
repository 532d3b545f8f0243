"""`train()`: data in, a stored run out, for any task. The glue between the run store, the task
(inspector/tasks/) and the engine's fitting (engine/trainer.py); it knows no task or strategy."""
from __future__ import annotations

import dataclasses

import inspect
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import timm
import torch

from .augment import resolve_preprocessing
from .backbones import check_backbone_name
from .config import TrainConfig
from .data import LabeledDataset, discover_dataset
from .engine.callbacks import Callback, dispatch
from .engine.context import FitContext
from .engine.device import describe_device, prepare_model, resolve_device
from .engine.distributed import DistributedFailure, Ranks, process_group, ranks_from_environment
from .engine.events import CheckpointSaved, Event, TrainEnd, TrainFailed, TrainStart
from .engine.features import FeatureCache
from .engine.loaders import load_image_set
from .engine.progress import ProgressTracker, Work, prior_seconds_per_pass
from .engine.trainer import fit_with_plan, plan_work
from .errors import InspectorError
from .runs import Run, RunStore
from .summary import RunSummary
from .tasks.base import create_task


@dataclass
class TrainResult:
    run_id: str
    run_dir: Path
    status: str
    backbone: str
    strategy: str
    strategy_reason: str
    summary: RunSummary
    evaluation: Any  # the task's typed evaluation report (e.g. ClassificationEvaluation), None when none
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def task(self) -> str:
        return self.summary.task

    @property
    def val_accuracy(self) -> float | None:
        return self.summary.val_accuracy

    @property
    def validation(self) -> str:
        return self.summary.validation

    @property
    def train_seconds(self) -> float:
        return self.summary.train_seconds

    def to_dict(self) -> dict[str, Any]:
        """The CLI's JSON result (`inspector train --json`): other tools read these keys."""
        result = {"run_id": self.run_id, "run_dir": str(self.run_dir), "status": self.status, "task": self.task,
                  "backbone": self.backbone, "strategy": self.strategy, "strategy_reason": self.strategy_reason,
                  "validation": self.summary.validation, **self.summary.metrics,
                  "train_seconds": round(self.summary.train_seconds, 2), "skipped": self.skipped}
        if "val_accuracy" in self.summary.metrics:
            result["val_accuracy_warning"] = self.summary.warning
        return result


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _as_dataset(data: LabeledDataset | str | Path | Iterable) -> LabeledDataset:
    return data if isinstance(data, LabeledDataset) else discover_dataset(data)


@dataclass(frozen=True)
class Domains:
    """Another line's labelled images and this line's unlabelled ones (domain adaptation); None: absent."""

    source: LabeledDataset | None = None
    unlabeled: LabeledDataset | None = None

    @property
    def used(self) -> bool:
        return self.source is not None or self.unlabeled is not None


def _domains(source, unlabeled) -> Domains:
    from .data import discover_images

    if unlabeled is not None and not isinstance(unlabeled, LabeledDataset):
        unlabeled = discover_images(unlabeled)
    return Domains(None if source is None else _as_dataset(source), unlabeled)


def _where(data: Any) -> str:
    if isinstance(data, LabeledDataset):
        return str(data.root) if data.root is not None else "(images given in memory)"
    return str(data)


def train(data: LabeledDataset | str | Path | Iterable | None, config: TrainConfig | None = None, *,
          source: LabeledDataset | str | Path | None = None, unlabeled: LabeledDataset | str | Path | None = None,
          runs_dir: str | Path | None = None, callbacks: Iterable[Callback] = (),
          stop_event: threading.Event | None = None, feature_cache: FeatureCache | None = None) -> TrainResult:
    """Train a model on `data` (folder, zip, (path, label) pairs or a LabeledDataset) and store it.

    Domain adaptation: `source` is another line's labelled dataset and `unlabeled` a folder, zip or
    dataset of this line's unlabelled images (any layout), by default `config.source` and
    `config.unlabeled`; `data` may then be None (no labelled image
    from this line: the classes are the source's). The task decides what it does with them.

    User mistakes raise InspectorError before a run folder is made. Failures during training are
    recorded in the run (status "failed") and re-raised. A stop request keeps the best model.
    """
    config = config or TrainConfig()
    started = time.perf_counter()
    task = create_task(config.task)
    # The config may carry the paths instead (background jobs, sweeps): they are read here.
    source = source if source is not None else config.source
    unlabeled = unlabeled if unlabeled is not None else config.unlabeled
    domains = _domains(source, unlabeled)
    if data is None and domains.source is None:
        raise InspectorError("No labelled images were given: pass a dataset folder or zip, or another line's "
                             "labelled images as the source.")
    dataset = _as_dataset(data) if data is not None else LabeledDataset([], list(domains.source.classes), [], None)
    if domains.used:
        config = config.replace(source=config.source or (_where(source) if source is not None else None),
                                unlabeled=config.unlabeled or (_where(unlabeled) if unlabeled is not None else None))
        task.check_domains(dataset, domains, config)
    else:
        task.check_dataset(dataset, config)
    check_backbone_name(config.backbone)
    ranks = ranks_from_environment()  # several when started by torchrun; rank 0 writes the run store
    device = ranks.device_for(resolve_device(config.device))
    with process_group(ranks, device):
        return _train(task, dataset, config, device, ranks, started, runs_dir=runs_dir, callbacks=callbacks,
                      stop_event=stop_event, feature_cache=feature_cache, domains=domains)


class _FollowerRun:
    """What ranks other than 0 hold instead of the run: they train, rank 0 alone writes the run."""

    def __init__(self, run_id: str, path: str) -> None:
        self.run_id, self.path = run_id, Path(path)

    def append_event(self, event: dict[str, Any]) -> None:
        pass

    def save_model(self, state_dict: dict, recipe: dict[str, Any]) -> None:
        pass

    def save_evaluation(self, evaluation: dict[str, Any]) -> None:
        pass

    def update(self, **fields: Any) -> None:
        pass


def _train(task, dataset: LabeledDataset, config: TrainConfig, device: torch.device, ranks: Ranks, started: float, *,
           runs_dir, callbacks, stop_event, feature_cache, domains: Domains = Domains()) -> TrainResult:
    seed_everything(config.seed)
    # One brightness mapping for the whole dataset's 16-bit images, stored in the recipe (preprocessing).
    config = config.replace(bit_depth=config.bit_depth or dataset.bit_depth)
    strategy, reason = task.choose_strategy(config, dataset, device)
    choice = task.scale(config, dataset)
    prep = dataclasses.replace(resolve_preprocessing(config.backbone, config.image_size, config.resize_mode,
                                                     config.bit_depth), tiling=choice.tiling, regions=config.regions or None)
    model = task.build_model(config, dataset, strategy)
    plan = task.validation_plan(dataset, config)

    resolved = config.replace(strategy=strategy.name, image_size=prep.image_size, epochs=strategy.epochs(config))
    run = None
    if ranks.is_main:
        run = RunStore(runs_dir).create({**resolved.to_dict(), "requested_strategy": config.strategy,
                                         "strategy_reason": reason, "world_size": ranks.world_size},
                                        backbone=config.backbone, strategy=strategy.name, name=config.name,
                                        task=task.name)
    run_id, run_path = ranks.broadcast((run.run_id, str(run.path)) if run else None)
    run = run or _FollowerRun(run_id, run_path)
    callbacks = list(callbacks) if ranks.is_main else []

    emitting = threading.Lock()  # the progress heartbeat emits from its own thread

    def emit(event: Event) -> None:
        with emitting:
            run.append_event(event.to_dict())
            dispatch(callbacks, event)

    def save(kept: torch.nn.Module, epoch: int, val_accuracy: float | None) -> None:
        # The recipe is taken from the fitted model: some tasks learn part of it (an anomaly bank's shape).
        recipe = {"task": task.name, "backbone": config.backbone, **task.recipe(kept, resolved, dataset, prep),
                  "preprocessing": prep.to_dict(), "strategy": strategy.name, "timm_version": timm.__version__,
                  "torch_version": torch.__version__}
        run.save_model(kept.state_dict(), recipe)
        emit(CheckpointSaved(run.run_id, epoch=epoch, val_accuracy=val_accuracy))

    skipped = [{"path": s.path, "reason": s.reason} for s in dataset.skipped]
    tracker = None
    try:
        emit(TrainStart(run.run_id, backbone=config.backbone, strategy=strategy.name, strategy_reason=reason,
                        device=_device_label(device, ranks), classes=list(dataset.classes),
                        n_images=len(dataset), validation=plan.description, epochs=resolved.epochs,
                        run_dir=str(run.path)))
        tracker = _tracker(run.run_id, emit, task, strategy, model, dataset, plan, resolved, prep, device, ranks,
                           domains)
        tracker.start("decoding", total=len(dataset) + domains_size(domains), unit="images")
        images = load_image_set(dataset, prep.image_size, prep.bit_depth, on_image=tracker.advance,
                                full_size=prep.tiling is not None)
        source_images, unlabeled_images = _load_domains(domains, dataset.classes, prep, tracker)
        ctx = FitContext(run.run_id, resolved, device, list(dataset.classes), prep, emit,
                         stop_event or threading.Event(), feature_cache=feature_cache, ranks=ranks, progress=tracker,
                         source=source_images, unlabeled=unlabeled_images)
        model = prepare_model(model, device)
        fitted = fit_with_plan(strategy, model, images, plan, ctx, save, cross_validate=config.cross_validate)
        tracker.start("evaluation")
        evaluation = task.evaluate(dataset, fitted.evaluated, fitted.outputs, model, plan, resolved)
        has_model = fitted.best_epoch is not None
        inference_ms = _inference_ms(task, model, images, prep, device, tracker) if has_model else None
    except InspectorError as exc:
        _fail(run, emit, str(exc), user_error=True)
        raise
    except torch.OutOfMemoryError as exc:
        message = "Out of memory: use a smaller batch size, image size or backbone."
        _fail(run, emit, message, user_error=True)
        raise InspectorError(message) from exc
    except Exception as exc:
        if ranks.active:  # a dead peer surfaces as a backend error inside DDP's backward pass
            message = (f"The distributed training stopped on rank {ranks.rank}: another of its processes failed "
                       f"or stopped answering ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}).")
            _fail(run, emit, message, user_error=False)
            raise DistributedFailure(message) from exc
        _fail(run, emit, f"{type(exc).__name__}: {exc}", user_error=False)
        raise
    finally:
        if tracker is not None:
            tracker.close()

    if evaluation.report:
        run.save_evaluation(evaluation.report)
    summary = RunSummary(task=task.name, n_images=len(dataset), classes=list(dataset.classes),
                         validation=plan.description, train_seconds=round(time.perf_counter() - started, 2),
                         best_epoch=fitted.best_epoch,
                         params_m=round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                         inference_ms_per_image=inference_ms,
                         metrics={**evaluation.metrics, **_domain_figures(resolved, domains, dataset.classes),
                                  **_scale_figures(choice),
                                  **(fitted.figures or {})})
    run.update(status=fitted.status, summary=summary.to_dict())
    tracker.finish()
    emit(TrainEnd(run.run_id, status=fitted.status, summary=summary.to_dict()))
    return TrainResult(run.run_id, run.path, fitted.status, config.backbone, strategy.name, reason, summary,
                       evaluation.report, skipped)


def domains_size(domains: Domains) -> int:
    """The images of the other line and the unlabelled ones (0 without domain adaptation)."""
    return sum(len(d) for d in (domains.source, domains.unlabeled) if d is not None)


def _load_domains(domains: Domains, classes: list[str], prep, tracker) -> tuple[Any, Any]:
    """The source's images with labels indexing the run's `classes` (its images of other classes are
    left out: check_domains said so), and the unlabelled images with label -1."""
    source = unlabeled = None
    if domains.source is not None:
        kept = [i for i, s in enumerate(domains.source.samples) if s.label in classes]
        subset = domains.source.subset(kept)
        source = load_image_set(subset, prep.image_size, prep.bit_depth, on_image=tracker.advance)
        source.labels = np.asarray([classes.index(s.label) for s in subset.samples], dtype=np.int64)
    if domains.unlabeled is not None:
        unlabeled = load_image_set(domains.unlabeled, prep.image_size, prep.bit_depth, on_image=tracker.advance)
        unlabeled.labels = np.full(len(unlabeled), -1, dtype=np.int64)
    return source, unlabeled


def _scale_figures(choice) -> dict[str, Any]:
    """How the run's images became model inputs: tiles (their side in camera pixels, the scale) or whole."""
    tiling = choice.tiling
    return {"inputs": "tiles" if tiling else "whole image", "scale_reason": choice.reason,
            **({"tile_px": tiling["tile"], "scale": round(choice.scale, 4)} if tiling else {})}


def _domain_figures(config: TrainConfig, domains: Domains, classes: list[str]) -> dict[str, Any]:
    """What a run with another line's images stores: which source, how many images of each kind it used
    (the source's images of the run's `classes`)."""
    if not domains.used:
        return {}
    n_source = sum(s.label in classes for s in domains.source.samples) if domains.source is not None else 0
    return {"source": config.source, "n_source": n_source,
            "n_unlabeled": len(domains.unlabeled) if domains.unlabeled is not None else 0}


HEARTBEAT_S = 2.0  # a Progress event at least this often, even while one batch runs long


def _tracker(run_id: str, emit, task, strategy, model: torch.nn.Module, dataset: LabeledDataset, plan,
             config: TrainConfig, prep, device: torch.device, ranks: Ranks, domains: Domains = Domains()) -> ProgressTracker:
    """The run's progress tracker with its whole plan: decoding, the fits (engine/trainer.plan_work),
    the task's evaluation; the speed prior from the device, image size and backbone size."""
    work = [Work("decoding", len(dataset) + domains_size(domains), "images", cost=DECODE_PASSES),
            *plan_work(strategy, model, plan, config, cross_validate=config.cross_validate,
                       n_source=len(domains.source) if domains.source is not None else 0,
                       n_unlabeled=len(domains.unlabeled) if domains.unlabeled is not None else 0),
            *task.evaluation_work(model, len(dataset), config)]
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    return ProgressTracker(run_id, emit, work, seconds_per_pass=prior_seconds_per_pass(device.type, prep.image_size,
                                                                                      params_m),
                           heartbeat_s=HEARTBEAT_S if ranks.is_main else None)


# Decoding one image costs about a tenth of a forward pass (camera-sized JPEGs/PNGs on the 2-core
# development machine); the measured speed takes over after the first images.
DECODE_PASSES = 0.1


def _inference_ms(task, model, images, prep, device, tracker: ProgressTracker) -> float | None:
    """task.inference_ms, following its progress when the task's hook takes `on_images` (plugins may not)."""
    if "on_images" in inspect.signature(task.inference_ms).parameters:
        return task.inference_ms(model, images, prep, device, on_images=tracker.advance)
    return task.inference_ms(model, images, prep, device)


def _device_label(device: torch.device, ranks: Ranks) -> str:
    label = describe_device(device).label
    return f"{label} x {ranks.world_size} processes" if ranks.active else label


def _fail(run: Run | _FollowerRun, emit, message: str, *, user_error: bool) -> None:
    try:
        run.update(status="failed", error=message)
        emit(TrainFailed(run.run_id, message=message, user_error=user_error))
    except OSError:
        pass  # the original error matters more than a failure to record it
