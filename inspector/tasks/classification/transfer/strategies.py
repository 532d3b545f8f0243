"""Transfer strategies of the classification task: each method of alignment.py as a registered strategy
(the strategy contract of ..strategies), and `auto_transfer`, the guard's choice, which `auto` runs
whenever another line's images are given."""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from ....engine.context import FitOutcome, TrainingStopped
from ....engine.events import EpochEnd
from ....engine.progress import Work, tracker_of
from ....errors import InspectorError
from ....evaluation import accuracy_and_f1, mean_log_loss
from ..strategies import NEEDS_SOURCE, LinearProbe, _set_head, _softmax, register_strategy
from .alignment import METHODS, DomainFeatures
from .guard import decide
from .shift import measure_shift


# The guard's work per image of both lines, in forward passes of the backbone: the label-free guard took
# 9.3 s for 1000 + 1000 images on the 2-core development machine (benchmarks/domain_shift.py), about
# 0.08 passes per image at its 0.06 s per pass.
ADAPTATION_PASSES_PER_IMAGE = 0.1


def transfer_figures(decision, data: DomainFeatures, classes: list[str], seed: int) -> dict:
    """What a transfer run's kept fit adds to the run's summary: the guard's `transfer` block and the
    `shift` between the lines' frozen features (this line's labelled and unlabelled images together)."""
    shift = measure_shift(data.source, data.source_labels, np.concatenate([data.target, data.unlabeled]),
                          np.r_[data.target_labels, np.full(len(data.unlabeled), -1)], classes, seed=seed)
    return {"transfer": decision.to_dict(),
            "shift": {"domain_auroc": shift.domain_auroc, "words": shift.words, "per_class": shift.per_class}
            if shift else None}


def domain_work(model, n_train: int, n_val: int, *, fold: str, cached: bool, n_source: int, n_unlabeled: int,
                adaptation: bool) -> list[Work]:
    """The planned work of reading both lines' frozen features (in the order `domain_features` extracts
    them) and, when `adaptation`, of the guard (engine/progress.py)."""
    views = 8 if getattr(model, "symmetric", False) else 1
    steps = [Work("features", 0 if cached else n, "images", cost=views, fold=fold)
             for n in (n_train, n_val, n_source, n_unlabeled) if n]
    if adaptation:
        images = n_train + n_val + n_source + n_unlabeled
        steps.append(Work("adaptation", 1, "steps", cost=ADAPTATION_PASSES_PER_IMAGE * images, fold=fold))
    return steps


class FeatureTransfer(LinearProbe):
    """A transfer method on frozen features (alignment.METHODS[method]); the model is the linear probe's.

    The kept model's fit also measures the shift between the lines and runs the guard (guard.decide):
    its figures go to the run's summary as `shift` and `transfer`."""

    transfer: ClassVar[bool] = True
    method: ClassVar[str]
    automatic: ClassVar[bool] = False  # True: the guard picks the method (auto_transfer)

    def methods(self) -> list[str]:
        return [self.method]

    def work(self, model, n_train, n_val, config, *, fold="final", cached=False, n_source=0, n_unlabeled=0):
        """Both lines' features, the guard (the kept model's fit; every fit of auto_transfer), the head."""
        return [*domain_work(model, n_train, n_val, fold=fold, cached=cached, n_source=n_source,
                             n_unlabeled=n_unlabeled, adaptation=fold == "final" or self.automatic),
                Work("head", 1, "steps", cost=1.0, fold=fold)]

    def domain_features(self, model, train, val, ctx) -> tuple[DomainFeatures, np.ndarray | None]:
        """The lines' features for this fit; a validation fold's images count as unlabelled ones."""
        if ctx.source is None:
            raise InspectorError(NEEDS_SOURCE.format(name=self.name))
        width = None
        parts = {}
        for key, images in (("train", train), ("val", val), ("source", ctx.source), ("unlabeled", ctx.unlabeled)):
            if images is not None and len(images):
                parts[key] = np.asarray(self.features(model, images, ctx), dtype=np.float64)
                width = parts[key].shape[1]
        empty = np.zeros((0, width))
        x_val = parts.get("val")
        unlabeled = [parts[k] for k in ("unlabeled", "val") if k in parts]
        data = DomainFeatures(parts["source"], np.asarray(ctx.source.labels), parts.get("train", empty),
                              np.asarray(train.labels) if "train" in parts else np.zeros(0, dtype=int),
                              np.concatenate(unlabeled) if unlabeled else empty, len(ctx.classes))
        return data, x_val

    def fit(self, model, train, val, ctx):
        try:
            data, x_val = self.domain_features(model, train, val, ctx)
        except TrainingStopped:
            return FitOutcome(model, None, None, stopped=True)
        tracker = tracker_of(ctx)
        figures = None
        method = self.method if not self.automatic else None
        if ctx.fold == "final" or self.automatic:
            tracker.start("adaptation", fold=ctx.fold, total=1, unit="steps")
            decision = decide(data, self.methods(), ctx.config.seed, automatic=self.automatic)
            method = decision.method
            if ctx.fold == "final":
                figures = transfer_figures(decision, data, ctx.classes, ctx.config.seed)
            tracker.advance(1)
        tracker.start("head", fold=ctx.fold, total=1, unit="steps")
        head = METHODS[method](data, ctx.config.seed)
        _set_head(model, head)
        tracker.advance(1)
        return self.outcome(model, head, data, x_val, val, ctx, figures)

    def outcome(self, model, head, data: DomainFeatures, x_val, val, ctx, figures) -> FitOutcome:
        """The fit's one epoch (EpochEnd: training loss on this line's labelled images, validation figures)
        and its outcome with `head` (acting on this line's raw features) as the kept model's classifier."""
        metrics = {"train_loss": None, "val_loss": None, "val_accuracy": None, "val_macro_f1": None,
                   "images_per_s": None}
        if len(data.target):
            metrics["train_loss"] = mean_log_loss(_softmax(head.logits(data.target)), data.target_labels)
        val_probs = None
        if x_val is not None:
            val_probs = _softmax(head.logits(x_val))
            metrics["val_loss"] = mean_log_loss(val_probs, val.labels)
            metrics["val_accuracy"], metrics["val_macro_f1"] = accuracy_and_f1(val.labels, val_probs.argmax(1),
                                                                               len(ctx.classes))
        ctx.emit(EpochEnd(ctx.run_id, epoch=1, epochs=1, lr=None, elapsed_s=ctx.elapsed, eta_s=0.0,
                          device=ctx.device.type, device_memory_mb=None, fold=ctx.fold, **metrics))
        return FitOutcome(model, 1, val_probs, figures=figures)


@register_strategy
class Coral(FeatureTransfer):
    name = method = "coral"
    summary = ("Another line's model, its feature covariance matched to this line's images (CORAL): seconds "
               "on a CPU, no labels needed from this line.")


@register_strategy
class OTMapping(FeatureTransfer):
    name = method = "ot_mapping"
    summary = ("Moves each of the other line's images onto this line's images by optimal transport, then fits "
               "the classifier: no labels needed from this line.")


@register_strategy
class SubspaceAlignment(FeatureTransfer):
    name = method = "subspace_alignment"
    summary = ("Rotates the other line's main feature directions onto this line's (subspace alignment); "
               "can hurt when the lines differ in what matters.")


@register_strategy
class ImportanceWeighting(FeatureTransfer):
    name = method = "importance_weighting"
    summary = ("Weights the other line's images by how much they look like this line's (kernel mean matching), "
               "so images that do not fit count less.")


@register_strategy
class SourceSelection(FeatureTransfer):
    name = method = "source_selection"
    summary = ("Keeps only the other line's images that lie among this line's images, and drops the rest.")


@register_strategy
class AutoTransfer(FeatureTransfer):
    name = "auto_transfer"
    summary = ("Measures every transfer method against this line's own images and keeps one only when it helps "
               "beyond the noise (the guard against negative transfer).")
    automatic = True

    def methods(self) -> list[str]:
        return [name for name in METHODS if name not in ("source_only", "target_only")]
