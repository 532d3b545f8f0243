"""The anomaly task's model and strategy: a PatchDetector wrapped so the generic trainer can fit,
checkpoint and reload it like any other model."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ...engine.context import FitContext, FitOutcome, TrainingStopped
from ...engine.events import StepEnd
from ...engine.loaders import ImageSet
from ...engine.progress import Work, tracker_of
from .calibration import calibrate
from .detector import PatchDetector

CALIBRATION_KEY = "calibration_scores"
CALIBRATION_FOLDS = 5


class AnomalyModel(nn.Module):
    """A fitted detector plus the out-of-sample scores of its good images (which set the threshold).

    Its state dict is the detector's tensors (backbone weights, memory bank) and those scores, so the
    run store writes it as safetensors like a classifier; `from_state` reads it back."""

    def __init__(self, detector: PatchDetector, calibration_scores: np.ndarray | None = None) -> None:
        super().__init__()
        self.detector = detector
        self.backbone = detector.model  # a submodule: .to(device) and parameter counts work as usual
        self.calibration_scores_ = calibration_scores

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # noqa: D102
        tensors = self.detector.state_tensors()
        if self.calibration_scores_ is not None:
            tensors[CALIBRATION_KEY] = torch.as_tensor(np.asarray(self.calibration_scores_, dtype=np.float64))
        return tensors

    @classmethod
    def from_state(cls, detector_state: dict[str, Any], tensors: dict[str, torch.Tensor],
                   device: torch.device) -> AnomalyModel:
        scores = tensors.get(CALIBRATION_KEY)
        detector = PatchDetector.from_state(detector_state, {k: v for k, v in tensors.items() if k != CALIBRATION_KEY},
                                            device=device)
        return cls(detector, None if scores is None else scores.double().numpy())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - scoring goes through the detector
        raise NotImplementedError("score images with model.detector.score()")


class PatchMemory:
    """The anomaly task's one strategy: a memory bank of good patches (PatchCore family).

    Fits on the good images only, scores each of them out of sample (k-fold: a bank built without
    it) for the threshold, and returns raw scores of the validation (defect) images."""

    name = "patch_memory"
    summary = "Remembers the patches of good parts; anything unlike them is an anomaly."

    def epochs(self, config) -> int:
        return 1  # one pass over the good images builds the memory bank

    def work(self, model: AnomalyModel, n_train: int, n_val: int, config, *, fold: str = "final",
             cached: bool = False) -> list[Work]:
        """The planned work of `fit` (engine/progress.py), from the detector's plan."""
        return [Work(w.phase, w.total, w.unit, w.cost, fold if w.fold == "final" else w.fold)
                for w in model.detector.fit_work(n_train, n_val, CALIBRATION_FOLDS)]

    def fit(self, model: AnomalyModel, train: ImageSet, val: ImageSet | None, ctx: FitContext) -> FitOutcome:
        tracker = _Stoppable(tracker_of(ctx), ctx)  # a stop also lands inside the long coreset passes

        def progress(phase: str, per_image: int):
            seen = [0]

            def on_batch(done: int, total: int) -> None:
                ctx.check_stop()
                tracker.advance((done - seen[0]) / per_image, images=done - seen[0],
                                detail={"images_embedded": done // per_image} if phase == "features" else None)
                seen[0] = done
                ctx.emit(StepEnd(ctx.run_id, phase=phase, step=done, steps=total, epoch=0, lr=None,
                                 images_per_s=done / max(ctx.elapsed, 1e-9), elapsed_s=ctx.elapsed, fold=ctx.fold))
            return on_batch

        try:
            tracker.start("features", fold=ctx.fold, total=len(train), unit="images")
            model.calibration_scores_ = model.detector.out_of_sample_scores(
                train.images, folds=CALIBRATION_FOLDS, seed=ctx.config.seed, on_batch=progress("features", 1),
                fit=True, ranks=ctx.ranks, progress=tracker)
            scale = calibrate(np.asarray(model.calibration_scores_, dtype=float), ctx.config.target_frr)
            tracker.note(threshold=float(scale.threshold), target_frr=ctx.config.target_frr)
            raw = None
            if val is not None:
                tracker.start("scoring", fold=ctx.fold, total=len(val), unit="images")
                raw = model.detector.score(val.images, on_batch=progress("scoring", 1))[0]
        except TrainingStopped:
            return FitOutcome(model, None, None, stopped=True)
        return FitOutcome(model, 1, None if raw is None else raw[:, None])


class _Stoppable:
    """A progress tracker that checks the stop flag whenever work is reported."""

    def __init__(self, tracker: Any, ctx: FitContext) -> None:
        self.tracker, self.ctx = tracker, ctx

    def start(self, *args: Any, **kwargs: Any) -> None:
        self.ctx.check_stop()
        self.tracker.start(*args, **kwargs)

    def advance(self, *args: Any, **kwargs: Any) -> None:
        self.ctx.check_stop()
        self.tracker.advance(*args, **kwargs)

    def note(self, **detail: Any) -> None:
        self.tracker.note(**detail)
