"""Transfer strategies of the classification task: small registered units. Add one with
@register_strategy (see `Strategy` for the contract the trainer enforces)."""
from __future__ import annotations

import time
from typing import ClassVar

import numpy as np
import timm.optim
import torch

from ...augment import build_inputs
from ...engine.context import FitContext, FitOutcome, TrainingStopped
from ...engine.events import EpochEnd, StepEnd
from ...engine.features import extract_features
from ...engine.loaders import ImageSet
from ...engine.loop import fit_gradient, gradient_work
from ...engine.progress import Work, tracker_of
from ...errors import InspectorError
from ...evaluation import accuracy_and_f1, mean_log_loss
from ...models import architecture_recipe
from .linear import LinearHead, fit_linear_head, head_steps


class Strategy:
    """A way to fit a pretrained model to the training images. The contract:

    - Class attributes: `name` (registry key), `summary` (one line for a quality engineer),
      `default_epochs`, optionally `default_lr` and `architecture` ("timm" or "multiscale",
      see inspector/models.py). The constructor takes no arguments and stores no data.
    - `fit(model, train, val, ctx)` trains `model` in place on `train` and returns a FitOutcome
      whose model holds the weights to keep, `best_epoch` (None only if stopped before any
      epoch ended) and, when `val` is given, one row of class probabilities per validation image.
    - It reports progress through `ctx.emit` (StepEnd/EpochEnd, one EpochEnd per epoch) and through
      the run's tracker (`engine.progress.tracker_of(ctx)`: start a phase, advance per image or batch,
      as planned by its `work`), and calls `ctx.check_stop()` at least once per batch. The TrainingStopped it raises may simply propagate
      (the trainer then keeps the last checkpoint), or the strategy returns `stopped=True` itself.
    - It never writes files: the trainer saves the kept model after `fit` returns, handles the
      folds (a fresh `ctx` per fold) and the final model. Engine loops may call `ctx.checkpoint`
      when the kept weights improve, so a crash mid-training still leaves a model.
    - Seeded: the same `ctx.config.seed` gives the same model.

    A completed fit without a model is rejected by the trainer. tests/test_strategy_contract.py
    runs these checks over every registered strategy, plugins included.
    """

    name: ClassVar[str]
    summary: ClassVar[str]  # one line a quality engineer understands
    default_epochs: ClassVar[int]
    default_lr: ClassVar[float] = 1e-3
    architecture: ClassVar[str] = "timm"  # see inspector/models.py

    def fit(self, model: torch.nn.Module, train: ImageSet, val: ImageSet | None, ctx: FitContext) -> FitOutcome:
        raise NotImplementedError

    def work(self, model: torch.nn.Module, n_train: int, n_val: int, config, *, fold: str = "final",
             cached: bool = False) -> list[Work]:
        """The planned work of one `fit` (engine/progress.py: phases, units, cost in forward passes),
        for the run's ETA. `cached`: the frozen features of these images are already computed.
        By default: gradient training (engine/loop.py's fit_gradient)."""
        return gradient_work(n_train, n_val, config.batch_size, self.epochs(config), fold)

    def epochs(self, config) -> int:
        return config.epochs or self.default_epochs

    def lr(self, ctx: FitContext) -> float:
        return ctx.config.lr or self.default_lr


STRATEGIES: dict[str, type[Strategy]] = {}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    STRATEGIES[cls.name] = cls
    return cls


def list_strategies() -> dict[str, str]:
    """name -> one-line explanation, "auto" first."""
    return {"auto": AUTO_SUMMARY, **{name: cls.summary for name, cls in STRATEGIES.items()}}


def create_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise InspectorError(f"Unknown strategy '{name}'. Choose one of: {', '.join(list_strategies())}.")
    return STRATEGIES[name]()


NEEDS_SOURCE = ("'{name}' carries a model from another line to this one: give that line's labelled images "
                "(inspector train --source FOLDER, or 'Images from another line' on the Data page).")

HEAD_STEPS = 12  # the linear head's planned steps: its LDA, up to 10 temperature folds, the search

AUTO_SUMMARY = "Picks the strategy that suits your number of images and your hardware."


def is_transfer(name: str) -> bool:
    """Does the strategy of that name carry a model from another line (it needs a source)?"""
    return bool(getattr(STRATEGIES.get(name), "transfer", False))


def choose_strategy(images_per_class: int, device_type: str, *, source: bool = False) -> tuple[str, str]:
    """The strategy `auto` runs, and why, in one sentence. `source`: another line's images are given."""
    if source:
        return "auto_transfer", ("another line's images are given: every transfer method is measured against "
                                 "this line's own images and kept only if it helps")
    if images_per_class < 30 or (device_type == "cpu" and images_per_class < 100):
        return "linear_probe", (f"with {images_per_class} images in the smallest class"
                                f"{' on a CPU' if device_type == 'cpu' else ''}, a tuned classifier on frozen "
                                "pretrained features is the most accurate and fastest choice")
    return "fine_tune", (f"with {images_per_class}+ images per class on {device_type.upper()}, "
                         "fine-tuning the whole network pays off")


def _set_head(model: torch.nn.Module, head: LinearHead) -> None:
    classifier = model.get_classifier()
    with torch.no_grad():
        classifier.weight.copy_(torch.from_numpy(head.weight).to(classifier.weight))
        classifier.bias.copy_(torch.from_numpy(head.bias).to(classifier.bias))


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


@register_strategy
class LinearProbe(Strategy):
    name = "linear_probe"
    summary = ("Keeps the pretrained network frozen and trains only a classifier on its features: "
               "seconds on a CPU, the best choice for a handful of images.")
    default_epochs = 1
    # Features come from the multiscale head, averaged over the 8 symmetric views unless the
    # orientation matters (TrainConfig.any_orientation). Random augmented views as extra rows
    # were tried too and added nothing on magnetic-tile (docs/BENCHMARKS.md), so there are none.
    architecture = "multiscale"

    def epochs(self, config) -> int:
        return 1  # the head is fitted in closed form: one pass, whatever the epoch setting

    def work(self, model, n_train, n_val, config, *, fold="final", cached=False) -> list[Work]:
        """Features of the training (and validation) images, then the closed-form head."""
        views = 8 if getattr(model, "symmetric", False) else 1
        views *= getattr(model, "planned_inputs", 1)  # a tiled run's tiles per image (ClassificationTask.build_model)
        steps = [Work("features", 0 if cached else n, "images", cost=views, fold=fold) for n in (n_train, n_val) if n]
        # The head's LDA fits grow with the square of the images: about 9 passes at 120 images
        # (0.6 s on the busy 2-core development machine), spread over its ~12 steps.
        return steps + [Work("head", HEAD_STEPS, "steps", cost=(1 + n_train ** 2 / 1800) / HEAD_STEPS, fold=fold)]

    def features(self, model, images: ImageSet, ctx: FitContext) -> np.ndarray:
        transform = build_inputs(ctx.preprocessing)  # a tiled run's image: the mean of its tiles' features

        def on_batch(step: int, steps: int, rate: float) -> None:
            ctx.check_stop()
            ctx.emit(StepEnd(ctx.run_id, phase="features", step=step, steps=steps, epoch=0,
                             lr=None, images_per_s=rate, elapsed_s=ctx.elapsed, fold=ctx.fold))

        # Features depend on the pooling head too (multiscale vs the backbone's own pooling).
        model_key = f"{ctx.model_key}|{architecture_recipe(model)}"
        # On a CPU, chunks of 8 images (16 without the symmetric views) keep the progress moving at no
        # cost: the symmetric model passes 8 images' views at a time anyway (models.VIEW_CHUNK).
        batch = max(32, ctx.config.batch_size) if ctx.device.type != "cpu" else (
            8 if getattr(model, "symmetric", False) else 16)
        return extract_features(model, images, transform, model_key=model_key, device=ctx.device,
                                batch_size=batch, on_batch=on_batch, cache=ctx.feature_cache, ranks=ctx.ranks,
                                progress=tracker_of(ctx), fold=ctx.fold)

    def fit_head(self, model, train, val, ctx) -> tuple[np.ndarray | None, dict] | None:
        """Fit the closed-form head in place: (validation probabilities, figures), or None if stopped.
        Emits feature-extraction progress only, so a composing strategy (lp_ft) reports its own epochs."""
        try:
            x_train = self.features(model, train, ctx)
            x_val = self.features(model, val, ctx) if val is not None and len(val) else None
        except TrainingStopped:
            return None
        started = time.perf_counter()
        tracker = tracker_of(ctx)
        tracker.start("head", fold=ctx.fold, total=head_steps(train.labels), unit="steps")
        head = fit_linear_head(x_train, train.labels, len(ctx.classes), seed=ctx.config.seed, on_step=tracker.advance)
        _set_head(model, head)
        figures = {"train_loss": mean_log_loss(_softmax(head.logits(x_train)), train.labels),
                   "val_loss": None, "val_accuracy": None, "val_macro_f1": None,
                   "images_per_s": len(x_train) / max(time.perf_counter() - started, 1e-9)}
        val_probs = None
        if x_val is not None:
            val_probs = _softmax(head.logits(x_val))
            figures["val_loss"] = mean_log_loss(val_probs, val.labels)
            figures["val_accuracy"], figures["val_macro_f1"] = accuracy_and_f1(val.labels, val_probs.argmax(1),
                                                                               len(ctx.classes))
        return val_probs, figures

    def fit(self, model, train, val, ctx):
        fitted = self.fit_head(model, train, val, ctx)
        if fitted is None:
            return FitOutcome(model, None, None, stopped=True)
        val_probs, figures = fitted
        ctx.emit(EpochEnd(ctx.run_id, epoch=1, epochs=1, lr=None, elapsed_s=ctx.elapsed, eta_s=0.0,
                          device=ctx.device.type, device_memory_mb=None, fold=ctx.fold, **figures))
        return FitOutcome(model, 1, val_probs)


@register_strategy
class FineTune(Strategy):
    name = "fine_tune"
    summary = ("Trains the whole network, lower layers more gently (layer-wise learning-rate decay): "
               "best with many images or a GPU.")
    default_epochs = 15
    default_lr = 1e-3

    def param_groups(self, model, ctx: FitContext) -> list[dict]:
        groups = timm.optim.param_groups_layer_decay(model, weight_decay=ctx.config.weight_decay,
                                                     layer_decay=ctx.config.layer_decay)
        for group in groups:  # plain AdamW does not know timm's lr_scale
            group["lr"] = self.lr(ctx) * group.pop("lr_scale", 1.0)
        return groups

    def fit(self, model, train, val, ctx):
        # A zero head starts at chance (loss ln K) instead of confidently wrong: timm's random head
        # on large pretrained features gave a first-epoch loss of ~5 for 5 classes.
        _zero_head(model)
        return fit_gradient(model, self.param_groups(model, ctx), train, val, ctx, epochs=self.epochs(ctx.config))


def _zero_head(model) -> None:
    classifier = model.get_classifier()
    torch.nn.init.zeros_(classifier.weight)
    torch.nn.init.zeros_(classifier.bias)


@register_strategy
class PartialFineTune(FineTune):
    name = "partial_fine_tune"
    summary = ("Trains only the last stages and the classifier; the early layers (edges, textures) stay "
               "as pretrained: a middle ground for a few dozen images per class.")
    trainable_groups = 3  # the classifier and the last two stages (timm's coarse group_matcher)

    def param_groups(self, model, ctx: FitContext) -> list[dict]:
        groups = list(timm.models.group_parameters(model, model.group_matcher(coarse=True)).values())
        trainable = {name for names in groups[-self.trainable_groups:] for name in names}
        for name, param in model.named_parameters():
            param.requires_grad_(name in trainable)  # BatchNorm statistics are frozen by the loop
        return [{"params": [p for n, p in model.named_parameters() if n in trainable], "lr": self.lr(ctx),
                 "weight_decay": ctx.config.weight_decay}]


@register_strategy
class LinearProbeThenFineTune(FineTune):
    name = "lp_ft"
    summary = ("First fits the classifier on frozen features, then gently fine-tunes everything from there "
               "(LP-FT, Kumar et al. 2022): keeps the pretrained features from being distorted early on.")
    default_lr = 1e-4

    def work(self, model, n_train, n_val, config, *, fold="final", cached=False) -> list[Work]:
        return (LinearProbe().work(model, n_train, n_val, config, fold=fold, cached=cached)
                + super().work(model, n_train, n_val, config, fold=fold, cached=cached))

    def fit(self, model, train, val, ctx):
        # The probe's head is the starting point only: no epoch of its own, no checkpoint; the
        # fine-tuning epochs that follow are the run's epochs 1..n.
        if LinearProbe().fit_head(model, train, val, ctx) is None:
            return FitOutcome(model, None, None, stopped=True)
        return fit_gradient(model, self.param_groups(model, ctx), train, val, ctx, epochs=self.epochs(ctx.config))


@register_strategy
class L2SP(FineTune):
    name = "l2_sp"
    summary = ("Fine-tunes everything but pulls the weights back toward the pretrained ones instead of "
               "toward zero (L2-SP): less forgetting with few images.")
    alpha = 0.01  # strength of the pull toward the pretrained weights

    def fit(self, model, train, val, ctx):
        _zero_head(model)
        head = {id(p) for p in model.get_classifier().parameters()}
        anchors = [(p, p.detach().clone()) for p in model.parameters() if id(p) not in head]

        def pull_to_pretrained(_model) -> torch.Tensor:
            return 0.5 * self.alpha * sum(((p - p0) ** 2).sum() for p, p0 in anchors)

        groups = self.param_groups(model, ctx)
        for group in groups:  # the penalty replaces weight decay toward zero for the backbone
            if not any(id(p) in head for p in group["params"]):
                group["weight_decay"] = 0.0
        return fit_gradient(model, groups, train, val, ctx, epochs=self.epochs(ctx.config),
                            regulariser=pull_to_pretrained)


# The transfer strategies register themselves (they build on LinearProbe above).
from .transfer import strategies as _transfer_strategies  # noqa: E402,F401
from .transfer import joint as _joint_strategies  # noqa: E402,F401
from .transfer import multitask as _multitask_strategy  # noqa: E402,F401
