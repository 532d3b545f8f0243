"""The gradient-training loop shared by every fine-tuning strategy.

Strategies differ only in the parameter groups they hand in (what trains, at which learning
rate), an optional regulariser and an optional extra loss per batch (e.g. a second data stream);
the loop itself is the same for all of them.
"""
from __future__ import annotations

import copy
import math
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..augment import build_transform
from ..evaluation import accuracy_and_f1, mean_log_loss
from .context import FitContext, FitOutcome, TrainingStopped
from .device import autocast, memory_mb, needs_grad_scaler, to_device
from .events import EpochEnd, StepEnd
from .loaders import ImageSet, make_loader
from .predict import predict_probabilities
from .progress import Work, tracker_of

Regulariser = Callable[[nn.Module], torch.Tensor]
# Called once per training batch, right after the loop's own forward pass of that batch and inside the
# same autocast, as extra_loss(model, step) with step = 0, 1, ... counting batches over the whole fit.
# Returns (a scalar added to the batch's loss, named scalar figures to report): the loop reports each
# figure's epoch mean in EpochEnd.terms, next to its own loss. A strategy uses it for a second data
# stream (e.g. another domain's images) without a loop of its own.
ExtraLoss = Callable[[nn.Module, int], "tuple[torch.Tensor, dict[str, torch.Tensor]]"]
TRAIN_STEP_PASSES = 3.0  # a training step (forward, backward, optimiser) costs about three forward passes


def batches_per_epoch(n_train: int, batch_size: int) -> int:
    """Batches per epoch as make_loader makes them (the last partial batch is dropped when there are more)."""
    return max(1, n_train // batch_size if n_train > batch_size else 1)


def gradient_work(n_train: int, n_val: int, batch_size: int, epochs: int, fold: str = "final") -> list[Work]:
    """The planned work of `fit_gradient` (engine/progress.py): every batch of every epoch, each
    carrying its share of the epoch's validation pass."""
    steps = batches_per_epoch(n_train, batch_size)
    per_batch = min(batch_size, n_train) * TRAIN_STEP_PASSES + n_val / steps
    return [Work("training", epochs * steps, "batches", cost=per_batch, fold=fold)]


def freeze_batchnorm(model: nn.Module) -> None:
    """Keep BatchNorm running statistics fixed: batches of a few images give noisy statistics."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


def _train_epoch(net: nn.Module, model: nn.Module, loader, optimizer, schedule, scaler,
                 regulariser: Regulariser | None, ctx: FitContext, epoch: int,
                 extra_loss: ExtraLoss | None = None) -> tuple[float, int, float, dict[str, float]]:
    """One pass over the training batches. `net` is `model` itself, or `model` wrapped for
    data-parallel training (its forward averages the gradients over the ranks).
    Returns (mean loss, images seen by all ranks, seconds, epoch means of extra_loss's figures)."""
    device, start, seen = ctx.device, time.perf_counter(), 0
    first_step = (epoch - 1) * len(loader)
    term_sums: dict[str, torch.Tensor] = {}  # summed on the device, like the loss
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)  # a new shuffle of the shards every epoch, the same on every rank
    net.train()
    freeze_batchnorm(model)
    loss_sum = torch.zeros((), device=device)  # summed on the device: no host sync per step
    for step, (x, y) in enumerate(loader, start=1):
        ctx.check_stop()
        x, y = to_device(x, device), y.to(device, non_blocking=True)
        with autocast(device):
            loss = F.cross_entropy(net(x).float(), y, label_smoothing=0.1)
            total = loss + regulariser(model) if regulariser else loss
            if extra_loss is not None:
                extra, figures = extra_loss(model, first_step + step - 1)
                total = total + extra
                for name, value in figures.items():
                    term_sums[name] = term_sums.get(name, torch.zeros((), device=device)) + value.detach().float()
        optimizer.zero_grad(set_to_none=True)
        if scaler:
            scaler.scale(total).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            total.backward()
            optimizer.step()
        schedule.step()
        loss_sum += loss.detach() * len(y)
        seen += len(y)
        tracker_of(ctx).advance(1, images=len(y) * ctx.ranks.world_size, detail={"epoch": epoch})
        ctx.emit(StepEnd(ctx.run_id, phase="train", step=step, steps=len(loader), epoch=epoch,
                         lr=optimizer.param_groups[-1]["lr"],
                         images_per_s=seen * ctx.ranks.world_size / max(time.perf_counter() - start, 1e-9),
                         elapsed_s=ctx.elapsed, fold=ctx.fold))
    loss_total, seen_total = ctx.ranks.sum([float(loss_sum), seen], device)
    names = sorted(term_sums)
    summed = ctx.ranks.sum([float(term_sums[name]) for name in names], device) if names else []
    steps = max(1, len(loader) * ctx.ranks.world_size)
    terms = {name: total / steps for name, total in zip(names, summed)}
    return loss_total / max(seen_total, 1), int(seen_total), time.perf_counter() - start, terms


def _validate(model: nn.Module, val: ImageSet, transform, ctx: FitContext) -> tuple[np.ndarray, float, float, float]:
    """(probabilities, loss, accuracy, macro-F1) on the validation images (each rank predicts its
    shard; every rank gets all the probabilities, so all take the same early-stopping decision)."""
    shard = ctx.ranks.shard(len(val))
    probs = predict_probabilities(model, val.subset(shard), transform, ctx.device, ctx.config.batch_size * 2)
    probs = ctx.ranks.gather_rows(probs, len(val))
    accuracy, f1 = accuracy_and_f1(val.labels, probs.argmax(1), len(ctx.classes))
    return probs, mean_log_loss(probs, val.labels), accuracy, f1


def fit_gradient(model: nn.Module, param_groups: list[dict], train: ImageSet, val: ImageSet | None,
                 ctx: FitContext, *, epochs: int, regulariser: Regulariser | None = None,
                 extra_loss: ExtraLoss | None = None, loss_name: str = "loss") -> FitOutcome:
    """Train with AdamW + warm-up/cosine; keep the weights with the best validation accuracy
    (the last epoch's without validation images). Early stopping after `patience` flat epochs.

    `extra_loss` (see ExtraLoss) adds a term to every batch's loss; then each EpochEnd carries `terms`:
    the epoch means of its figures and of the loop's own cross-entropy, named `loss_name`."""
    cfg, device, ranks = ctx.config, ctx.device, ctx.ranks
    # The global batch stays cfg.batch_size: each of N ranks takes 1/N of it (same optimisation as one process).
    loader = make_loader(train, build_transform(ctx.preprocessing, cfg.augment, seed=cfg.seed + ranks.rank),
                         batch_size=max(1, cfg.batch_size // ranks.world_size), shuffle=True, seed=cfg.seed,
                         device=device, ranks=ranks)
    net = ranks.wrap(model, device)
    eval_transform = build_transform(ctx.preprocessing, "none")
    steps_per_epoch = max(1, len(loader))
    optimizer = torch.optim.AdamW(param_groups)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(epochs * steps_per_epoch, max(1, cfg.warmup_epochs * steps_per_epoch)))
    scaler = torch.amp.GradScaler("cuda") if needs_grad_scaler(device) else None

    tracker_of(ctx).start("training", fold=ctx.fold, total=epochs * steps_per_epoch, unit="batches",
                          detail={"epoch": 1, "epochs": epochs})
    best_state, best_key, best_epoch, best_probs, stale = None, None, None, None, 0
    epoch_times: list[float] = []
    stopped = False
    try:
        for epoch in range(1, epochs + 1):
            epoch_start = time.perf_counter()
            train_loss, seen, train_seconds, terms = _train_epoch(net, model, loader, optimizer, schedule, scaler,
                                                                  regulariser, ctx, epoch, extra_loss)
            probs, val_loss, val_acc, val_f1 = (_validate(model, val, eval_transform, ctx)
                                                if val is not None and len(val) else (None, None, None, None))
            epoch_times.append(time.perf_counter() - epoch_start)
            ctx.emit(EpochEnd(ctx.run_id, epoch=epoch, epochs=epochs, train_loss=train_loss, val_loss=val_loss,
                              val_accuracy=val_acc, val_macro_f1=val_f1, lr=optimizer.param_groups[-1]["lr"],
                              images_per_s=seen / max(train_seconds, 1e-9), elapsed_s=ctx.elapsed,
                              eta_s=float(np.mean(epoch_times)) * (epochs - epoch), device=device.type,
                              device_memory_mb=memory_mb(device), fold=ctx.fold,
                              terms={loss_name: train_loss, **terms} if extra_loss is not None else None))
            key = (val_acc, -val_loss) if val_acc is not None else (epoch, 0.0)
            if best_key is None or key > best_key:
                best_key, best_epoch, best_probs, stale = key, epoch, probs, 0
                best_state = copy.deepcopy(model.state_dict())
                ctx.checkpoint(model, epoch, val_acc)
            else:
                stale += 1
                if val is not None and stale >= cfg.patience:
                    break
    except TrainingStopped:
        stopped = True  # keep the best weights so far; the trainer marks the run stopped
    if best_state is not None:
        model.load_state_dict(best_state)
    return FitOutcome(model, best_epoch, best_probs, stopped)
