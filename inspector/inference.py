"""Load a trained run of any task (no pickle, no training code) and predict with it.

`load_predictor(run_dir)` returns the run's task predictor: a ClassificationPredictor (classes,
probabilities, Grad-CAM, OK/NG) or an anomaly predictor (score, verdict, anomaly map).
Every predictor follows `inspector.tasks.base.Predictor` (the protocol). `Predictor.from_run` here is
the classification-only shortcut kept for existing callers.
"""
from __future__ import annotations

import os
from typing import Any

from .engine.device import resolve_device
from .errors import InspectorError
from .runs import Run
from .tasks.base import task_of_recipe
from .tasks.classification import ClassificationTask
from .tasks.classification.predictor import (
    ClassificationPredictor,
    ImageInput,
    Prediction,
    Verdict,
    as_rgb_array,
    verdict,
)


def load_predictor(run_dir: str | os.PathLike, device: str = "auto", **options: Any):
    """The predictor of the run's task, ready to use. Thread-safe; share one per run."""
    run = Run(run_dir)
    recipe, state = run.model_files()
    task = task_of_recipe(recipe)
    try:
        return task.load_predictor(recipe, state, resolve_device(device), run_dir=run.path, **options)
    except InspectorError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign model: any loader error
        raise InspectorError(f"The model in {run.path} cannot be loaded: {exc}") from exc


class Predictor(ClassificationPredictor):
    """A classification run's predictor (the public name the app, CLI and benchmarks use)."""

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, device: str = "auto", compile: bool = False) -> Predictor:
        run = Run(run_dir)
        recipe, state = run.model_files()
        task = task_of_recipe(recipe)
        if not isinstance(task, ClassificationTask):
            raise InspectorError(f"Run {run.run_id} is an {task.name} run, not a classifier: load it with "
                                 "load_predictor().")
        try:
            return cls.from_recipe(recipe, state, resolve_device(device), compile=compile, run_dir=run.path)
        except Exception as exc:  # noqa: BLE001 - a damaged or foreign model: any loader error
            raise InspectorError(f"The model in {run.path} cannot be loaded: {exc}") from exc


__all__ = ["ClassificationPredictor", "ImageInput", "Prediction", "Predictor", "Verdict", "as_rgb_array",
           "load_predictor", "verdict"]
