"""The task concept: what a run learns. Each task owns its model, its strategies, its validation,
its metrics and its predictor; the trainer (inspector/training.py), the run store, the predictor
loader, the CLI and the pages only talk to this interface.

Add a task by subclassing `Task` and decorating it with `@register_task`; a run's recipe
(model.json) names its task, and runs written before tasks existed are classification runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from ..errors import InspectorError

if TYPE_CHECKING:  # type names only: no import at run time
    from ..augment import Preprocessing
    from ..config import TrainConfig
    from ..data import LabeledDataset, ValidationPlan


@dataclass(frozen=True)
class Evaluation:
    """What a task reports after training: the figures for the summary and the stored report."""

    metrics: dict[str, Any]  # flat figures for RunSummary.metrics (val_accuracy, val_auroc, ...)
    report: dict[str, Any] | None  # evaluation.json (None: nothing was evaluated)


class Task:
    """One kind of model. Subclasses set `name`/`summary` and implement the methods below."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one line a quality engineer understands

    def check_dataset(self, dataset: LabeledDataset, config: TrainConfig) -> None:
        """Raise InspectorError, in plain words, when the data cannot train this task."""

    def choose_strategy(self, config: TrainConfig, dataset: LabeledDataset, device: torch.device):
        """(a Strategy instance, why it was chosen in one sentence)."""
        raise NotImplementedError

    def build_model(self, config: TrainConfig, dataset: LabeledDataset, strategy) -> torch.nn.Module:
        raise NotImplementedError

    def validation_plan(self, dataset: LabeledDataset, config: TrainConfig) -> ValidationPlan:
        raise NotImplementedError

    def recipe(self, model: torch.nn.Module, config: TrainConfig, dataset: LabeledDataset,
               preprocessing: Preprocessing) -> dict[str, Any]:
        """Task-specific fields of model.json (the trainer adds task, backbone, preprocessing...)."""
        return {}

    def evaluate(self, dataset: LabeledDataset, evaluated: np.ndarray, outputs: np.ndarray,
                 model: torch.nn.Module, plan: ValidationPlan, config: TrainConfig) -> Evaluation:
        """Metrics from the validation outputs (rows of `outputs` belong to `evaluated` indices)."""
        raise NotImplementedError

    def inference_ms(self, model: torch.nn.Module, images, preprocessing: Preprocessing,
                     device: torch.device) -> float | None:
        """Milliseconds per image for the kept model at batch 32 (the Compare page); None: not measured."""
        return None

    def load_predictor(self, recipe: dict[str, Any], state: dict[str, torch.Tensor], device: torch.device,
                       **options: Any):
        """A ready predictor from a stored recipe and weights (no pickle, no training code)."""
        raise NotImplementedError


TASKS: dict[str, type[Task]] = {}
DEFAULT_TASK = "classification"


def register_task(cls: type[Task]) -> type[Task]:
    TASKS[cls.name] = cls
    return cls


def list_tasks() -> dict[str, str]:
    """name -> one-line explanation."""
    _load_builtin_tasks()
    return {name: cls.summary for name, cls in TASKS.items()}


def create_task(name: str | None) -> Task:
    _load_builtin_tasks()
    name = name or DEFAULT_TASK
    if name not in TASKS:
        raise InspectorError(f"Unknown task '{name}'. Choose one of: {', '.join(TASKS)}.")
    return TASKS[name]()


def task_of_recipe(recipe: dict[str, Any]) -> Task:
    """The task a stored model belongs to; runs from before tasks existed are classification."""
    return create_task(recipe.get("task", DEFAULT_TASK))


def _load_builtin_tasks() -> None:
    # The built-in tasks register themselves on import; importing here (not at module top) keeps
    # `inspector.tasks.base` importable first by a plugin without a cycle.
    from . import anomaly, classification  # noqa: F401
