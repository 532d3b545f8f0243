"""The classification task: learn defect classes from labelled images of every class.

Training-side modules (strategies, the linear head, scikit-learn) are imported inside the methods
that need them, so loading a predictor never loads training code."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ...data import plan_validation, validate_dataset
from ...errors import InspectorError
from ...evaluation import evaluate_predictions
from ...models import architecture_recipe, build_model
from ..base import Evaluation, Task, register_task


@register_task
class ClassificationTask(Task):
    name = "classification"
    summary = "I have labelled defects: learn each defect class from a few photos of every class."

    def check_dataset(self, dataset, config) -> None:
        report = validate_dataset(dataset)
        if not report.ok:
            raise InspectorError(" ".join(f.message for f in report.errors))

    def choose_strategy(self, config, dataset, device):
        from .strategies import choose_strategy, create_strategy

        if config.strategy != "auto":
            return create_strategy(config.strategy), "chosen by you"
        name, reason = choose_strategy(min(dataset.counts().values()), device.type)
        return create_strategy(name), reason

    def build_model(self, config, dataset, strategy) -> torch.nn.Module:
        return build_model(config.backbone, len(dataset.classes), strategy.architecture,
                           weights_path=config.weights_path, symmetric=config.any_orientation)

    def validation_plan(self, dataset, config):
        return plan_validation(dataset.labels, seed=config.seed, val_fraction=config.val_fraction,
                               max_folds=config.max_folds)

    def recipe(self, model, config, dataset, preprocessing) -> dict[str, Any]:
        return {"num_classes": len(dataset.classes), "classes": list(dataset.classes), **architecture_recipe(model)}

    def evaluate(self, dataset, evaluated, outputs, model, plan, config) -> Evaluation:
        """Accuracy, macro-F1 and the confusion matrix over the out-of-sample images, plus each
        image's prediction (for paired comparisons of two runs)."""
        if not len(evaluated):
            return Evaluation({"val_accuracy": None, "val_accuracy_ci": None, "val_macro_f1": None}, None)
        predicted = outputs.argmax(1)
        truth = np.asarray(dataset.labels)[evaluated]
        report = evaluate_predictions(truth, predicted, dataset.classes, method=plan.description)
        report["predictions"] = [{"path": str(dataset.samples[i].path), "label": dataset.classes[t],
                                  "predicted": dataset.classes[p]} for i, t, p in zip(evaluated, truth, predicted)]
        return Evaluation({"val_accuracy": report["accuracy"], "val_accuracy_ci": report["accuracy_ci"],
                           "val_macro_f1": report["macro_f1"]}, report)

    def inference_ms(self, model, images, preprocessing, device) -> float:
        import time

        from ...augment import build_transform
        from ...engine.predict import predict_probabilities

        sample = images.subset(range(min(32, len(images))))
        start = time.perf_counter()
        predict_probabilities(model, sample, build_transform(preprocessing, "none"), device, batch_size=32)
        return round(1000 * (time.perf_counter() - start) / max(1, len(sample)), 2)

    def load_predictor(self, recipe, state, device, **options):
        from .predictor import ClassificationPredictor

        return ClassificationPredictor.from_recipe(recipe, state, device, **options)
