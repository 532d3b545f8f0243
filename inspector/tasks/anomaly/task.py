"""The anomaly task: learn what good parts look like from good images only, and flag anything else.

The threshold comes from good images alone: each is scored by a memory bank built without it, and
split-conformal calibration picks the score that keeps the false-reject rate on new good parts at
or below the user's target. Defect images, when present, are never trained on and never set the
threshold; they only measure the detection rate and the AUROC."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ...data import ValidationPlan
from ...engine.device import resolve_device
from ...errors import InspectorError
from ...evaluation import auroc
from ..base import Evaluation, Task, register_task
from .calibration import calibrate, frr_guarantee_message, min_guaranteed_frr
from .detector import DetectorConfig, PatchDetector
from .model import CALIBRATION_FOLDS, AnomalyModel, PatchMemory

GOOD_NAMES = ("good", "ok", "normal", "nominal", "free", "pass")
# Measured on magnetic-tile (docs/BENCHMARKS.md): 256 px 0.837 AUROC, 320 px 0.834 at 1.56x the
# patches, the reference at 224 px 0.823. Used when the user leaves the image size to the tool.
DEFAULT_IMAGE_SIZE = 256
MIN_GOOD_IMAGES = 2


def good_classes(classes: Sequence[str], ok_classes: Sequence[str] | None = None) -> list[str]:
    """The classes that hold good parts: those named by the user, else the one class named good, ok,
    normal, nominal, free or pass (any case), else the only class. Plain errors otherwise."""
    classes = list(classes)
    if ok_classes:
        unknown = [c for c in ok_classes if c not in classes]
        if unknown:
            raise InspectorError(f"The OK classes {', '.join(unknown)} are not in the data; its classes are "
                                 f"{', '.join(classes) or 'none'}.")
        return list(dict.fromkeys(ok_classes))
    named = [c for c in classes if c.strip().lower() in GOOD_NAMES]
    if len(named) == 1:
        return named
    if len(classes) == 1:
        return classes
    if len(named) > 1:
        raise InspectorError(f"Several classes look like good parts ({', '.join(named)}): say which with "
                             "--ok-classes (or pick them in the app).")
    raise InspectorError(f"None of the classes ({', '.join(classes)}) is recognisably the good parts (named "
                         f"{', '.join(GOOD_NAMES)}): name the good class(es) with --ok-classes.")


@register_task
class AnomalyTask(Task):
    name = "anomaly"
    summary = "I only have good parts: learn what good looks like and flag anything unusual."

    def check_dataset(self, dataset, config) -> None:
        if not len(dataset):
            raise InspectorError("There are no readable images to learn from.")
        good = good_classes(dataset.classes, config.ok_classes)
        n_good = sum(dataset.counts()[c] for c in good)
        if n_good < MIN_GOOD_IMAGES:
            raise InspectorError(f"Anomaly detection needs at least {MIN_GOOD_IMAGES} good images to set its "
                                 f"threshold (each good image is scored by a model built without it); "
                                 f"found {n_good} in {', '.join(good)}. Add more photos of good parts.")

    def choose_strategy(self, config, dataset, device):
        if config.strategy not in ("auto", PatchMemory.name):
            raise InspectorError(f"The anomaly task has one strategy, '{PatchMemory.name}'; "
                                 f"'{config.strategy}' is a classification strategy.")
        return PatchMemory(), "a memory bank of good patches needs no defect images"

    def build_model(self, config, dataset, strategy) -> torch.nn.Module:
        detector_config = DetectorConfig(backbone=config.backbone, image_size=config.image_size or DEFAULT_IMAGE_SIZE,
                                         resize_mode=config.resize_mode, symmetric=config.symmetric_bank,
                                         seed=config.seed)
        return AnomalyModel(PatchDetector(detector_config, resolve_device(config.device),
                                          weights_path=config.weights_path))

    def validation_plan(self, dataset, config) -> ValidationPlan:
        good = {dataset.classes.index(c) for c in good_classes(dataset.classes, config.ok_classes)}
        labels = np.asarray(dataset.labels)
        good_idx = np.flatnonzero(np.isin(labels, list(good)))
        defect_idx = np.flatnonzero(~np.isin(labels, list(good)))
        description = (f"threshold from {len(good_idx)} good images, each scored by a model built without it "
                       f"({min(CALIBRATION_FOLDS, len(good_idx))}-fold)")
        if len(defect_idx):
            description += f"; {len(defect_idx)} defect images only measure detection (never trained on)"
        return ValidationPlan("holdout", [(good_idx, defect_idx)], description)

    def recipe(self, model, config, dataset, preprocessing) -> dict[str, Any]:
        return {"classes": list(dataset.classes), "ok_classes": good_classes(dataset.classes, config.ok_classes),
                "target_frr": config.target_frr, "detector": model.detector.state_config()
                if hasattr(model.detector, "memory_bank_") else None}

    def evaluate(self, dataset, evaluated, outputs, model, plan, config) -> Evaluation:
        good_idx, _ = plan.folds[0]
        target = config.target_frr
        scores = np.asarray(model.calibration_scores_, dtype=float)
        scale = calibrate(scores, target)
        raw_defects = outputs[:, 0] if len(evaluated) else np.zeros(0)
        labels = [dataset.classes[dataset.labels[i]] for i in evaluated]
        caught = raw_defects > scale.threshold
        per_class = {c: float(np.mean([hit for hit, lab in zip(caught, labels) if lab == c]))
                     for c in dict.fromkeys(labels)}
        area = auroc(scores, raw_defects)
        metrics = {"n_good": int(len(good_idx)), "n_defect": int(len(evaluated)), "threshold": scale.threshold,
                   "target_frr": target, "min_guaranteed_frr": min_guaranteed_frr(len(scores)),
                   "frr_warning": frr_guarantee_message(len(scores), target), "val_auroc": area,
                   "val_detection_rate": float(caught.mean()) if len(caught) else None}
        report = {"method": plan.description, **metrics, "score_scale": scale.to_dict(),
                  "detection_rate_per_class": per_class,
                  "good_scores": scale.readable(scores).tolist(), "good_raw_scores": scores.tolist(),
                  "defects": [{"path": str(dataset.samples[i].path), "label": lab, "raw_score": float(r),
                               "score": float(scale.readable(r))} for i, lab, r in zip(evaluated, labels, raw_defects)]}
        return Evaluation(metrics, report)

    def load_predictor(self, recipe, state, device, **options):
        from .predictor import AnomalyPredictor

        return AnomalyPredictor.from_recipe(recipe, state, device, **options)

