"""A task registered from outside the package: classify a part by its mean colour (nearest class
centroid). Small on purpose: it shows what a new task must provide, and that every front end finds it."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from inspector.data import plan_validation
from inspector.engine import FitOutcome
from inspector.evaluation import evaluate_predictions
from inspector.tasks.base import Evaluation, PredictOptions, Task, register_task

NAME = "toy_mean_colour"


class ColourCentroids(torch.nn.Module):
    """One mean RGB colour per class, in [0, 1]."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.register_buffer("centroids", torch.zeros(n_classes, 3, dtype=torch.float64))

    def probabilities(self, images: list[np.ndarray]) -> np.ndarray:
        means = np.array([im.reshape(-1, 3).mean(0) / 255.0 for im in images]).reshape(len(images), 3)
        distance = np.linalg.norm(means[:, None] - self.centroids.numpy()[None], axis=2)
        weights = np.exp(-20 * distance)
        return weights / weights.sum(1, keepdims=True)


class FitCentroids:
    name = "centroids"
    summary = "The mean colour of each class."

    def epochs(self, config) -> int:
        return 1

    def fit(self, model: ColourCentroids, train, val, ctx) -> FitOutcome:
        for index in range(len(ctx.classes)):
            chosen = [im for im, label in zip(train.images, train.labels) if label == index]
            if chosen:
                model.centroids[index] = torch.from_numpy(np.mean([im.reshape(-1, 3).mean(0) / 255.0 for im in chosen], 0))
        return FitOutcome(model, 1, None if val is None else model.probabilities(val.images))


class ToyPrediction:
    def __init__(self, label: str, probabilities: dict[str, float]) -> None:
        self.label, self.probabilities = label, probabilities

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "probabilities": self.probabilities}


class ToyPredictor:
    task = NAME

    def __init__(self, model: ColourCentroids, classes: list[str], run_dir=None) -> None:
        self.model, self.classes, self.run_dir = model, classes, run_dir
        self.preprocessing = None
        self.device = "cpu"

    def predict_batch(self, images) -> list[ToyPrediction]:
        from inspector.data import load_image, to_rgb_array

        arrays = [im if isinstance(im, np.ndarray) else to_rgb_array(load_image(im)) for im in images]
        return [ToyPrediction(self.classes[int(row.argmax())], dict(zip(self.classes, map(float, row))))
                for row in self.model.probabilities(arrays)]


@register_task
class MeanColourTask(Task):
    name = NAME
    summary = "Toy: tell classes apart by their mean colour."
    choice = "My classes differ in colour"

    def choose_strategy(self, config, dataset, device):
        return FitCentroids(), "the only strategy"

    def build_model(self, config, dataset, strategy):
        return ColourCentroids(len(dataset.classes))

    def validation_plan(self, dataset, config):
        return plan_validation(dataset.labels, seed=config.seed, val_fraction=config.val_fraction,
                               max_folds=config.max_folds)

    def recipe(self, model, config, dataset, preprocessing) -> dict[str, Any]:
        return {"classes": list(dataset.classes)}

    def evaluate(self, dataset, evaluated, outputs, model, plan, config) -> Evaluation:
        truth = np.asarray(dataset.labels)[evaluated]
        report = evaluate_predictions(truth, outputs.argmax(1), dataset.classes, method=plan.description)
        return Evaluation({"val_accuracy": report["accuracy"]}, report)

    def load_predictor(self, recipe, state, device, run_dir=None, **options):
        model = ColourCentroids(len(recipe["classes"]))
        model.load_state_dict(state)
        return ToyPredictor(model, recipe["classes"], run_dir)

    def model_rows(self, predictor, images, options: PredictOptions) -> list[dict[str, Any]]:
        return [p.to_dict() for p in predictor.predict_batch(list(images))]

    def describe_row(self, row: dict[str, Any]) -> str:
        return row["label"]
