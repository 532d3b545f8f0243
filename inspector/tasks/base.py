"""The task concept: what a run learns. A task is one folder under `inspector/tasks/`; it owns its
model, strategies, validation, metrics, predictor, result rows, export graph and parity rule, and
every front end (trainer, CLI, service, bundle export, pages) calls its hooks instead of branching
on its name.

This module is a leaf, like timm's `_registry.py`: it imports no task. The built-in tasks are
imported by name on the first `list_tasks()` / `create_task()`; other packages can add tasks with
the entry-point group `inspector.tasks` or by importing a module that uses `@register_task`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import InspectorError

if TYPE_CHECKING:  # type names only: no import at run time
    import torch

    from ..augment import Preprocessing
    from ..config import TrainConfig
    from ..data import LabeledDataset, ValidationPlan
    from ..summary import RunSummary

BUILTIN_TASKS = ("inspector.tasks.classification", "inspector.tasks.anomaly")
ENTRY_POINT_GROUP = "inspector.tasks"


@dataclass(frozen=True)
class Evaluation:
    """What a task reports after training: the figures for the summary and the stored report."""

    metrics: dict[str, Any]  # flat figures for RunSummary.metrics (val_accuracy, val_auroc, ...)
    report: Any  # the task's typed report (its evaluation_type, with to_dict()); the run store writes it
    # as evaluation.json. None: nothing was evaluated.


@dataclass(frozen=True)
class ParityRule:
    """How a task's exported bundle is compared with its PyTorch predictor (deploy/parity.py)."""

    decision: str  # what must agree on every image: "labels", "verdicts"
    values: str  # what is compared in numbers: "probabilities", "raw scores"
    difference: str  # the key of the largest difference in parity.json
    described: str  # the difference in words
    tolerance: float  # its default limit
    torch_outputs: Callable[[Any, list], Any]  # (predictor, RGB arrays) -> outputs
    bundle_outputs: Callable[[Any, list], Any]  # (the bundle's Bundle, RGB arrays) -> outputs
    # (bundle outputs, predictor outputs, bundle, predictor) -> (decisions agree (n,), difference (n,))
    compare: Callable[[Any, Any, Any, Any], tuple[np.ndarray, np.ndarray]]
    # (bundle outputs, predictor outputs) -> {"max_<figure>": per image (n,)}: more differences written
    # to parity.json (its max_ and mean_ keys) that do not decide; None: none
    reported: Callable[[Any, Any], dict[str, np.ndarray]] | None = None


@dataclass(frozen=True)
class Column:
    """One figure of a run's summary as a table column (Compare page, `inspector runs`)."""

    key: str  # the key in RunSummary.metrics
    label: str
    format: str = "%.3f"  # printf style, "percent", or "" (shown as text)
    help: str = ""

    def text(self, value: Any) -> str:
        """The value as a table cell ("-" when missing)."""
        if value is None:
            return "-"
        if isinstance(value, (list, tuple)) and len(value) == 2:  # an interval
            return f"{value[0]:.0%} - {value[1]:.0%}"
        if self.format == "percent":
            return f"{value:.1%}"
        return self.format % value if self.format and isinstance(value, (int, float)) else str(value)


@dataclass(frozen=True)
class PredictOptions:
    """What a user may set when predicting; each task accepts its own and refuses the others plainly.

    ok_classes / threshold: classifiers (an OK/NG verdict from P(defect)); head: classifiers, which line's
    classifier predicts ("target": this line's, the default; "source": the other line's, kept by a
    multi-task run); target_frr / classifier: anomaly runs (move the threshold; name the defect type of NG
    parts with a classification predictor).
    """

    ok_classes: tuple[str, ...] = ()
    threshold: float | None = None
    target_frr: float | None = None
    classifier: Any = None
    head: str | None = None  # None: the run's own (this line's) classifier

    def given(self) -> dict[str, str]:
        """The options that were set, as the CLI spells them (for error messages)."""
        names = {"ok_classes": "--ok-classes", "threshold": "--threshold", "target_frr": "--target-frr",
                 "classifier": "--classifier", "head": "--head"}
        return {key: flag for key, flag in names.items() if getattr(self, key) not in (None, (), [])}


@runtime_checkable
class Predictor(Protocol):
    """What every predictor offers (a task's PyTorch predictor, or a bundle behind `serve --runtime`).

    Thread-safe: share one per run. `predict_batch` takes RGB uint8 arrays (H, W, 3) (the PyTorch
    predictors also take paths, bytes and PIL images) and returns one typed prediction per image,
    each with `to_dict()`; the task's `result_rows` turns them into result rows.
    """

    task: str  # the task's name (create_task(predictor.task) gives its hooks)
    classes: list[str]
    run_dir: Path | None  # the run it was loaded from (None: built in memory)

    @property
    def preprocessing(self) -> Any: ...  # has to_dict(): image_size, resize_mode, mean, std, bit_depth...

    @property
    def device(self) -> Any: ...

    def predict_batch(self, images: Sequence[Any]) -> list[Any]: ...


def bit_depth_of(predictor: Any) -> int | None:
    """The camera bit depth `predictor` was trained with (its preprocessing's; None: 8-bit data)."""
    return predictor.preprocessing.to_dict().get("bit_depth") if predictor.preprocessing is not None else None


def decode_for(predictor: Any, source: Any, *, max_pixels: int | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3) of an image file (path or bytes) decoded as `predictor` was trained: with
    its camera bit depth for 16-bit images (its preprocessing's `bit_depth`). Every entry point that
    decodes images for a predictor (CLI, service, app) uses it. Raises ImageLoadError."""
    from ..runtime.images import load_image, to_rgb_array

    return to_rgb_array(load_image(source, max_pixels=max_pixels, bit_depth=bit_depth_of(predictor)))


class Task:
    """One kind of model. Subclasses set the class attributes and implement the methods below."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one line a quality engineer understands
    choice: ClassVar[str] = ""  # the words of this task's choice on the Train page
    accepts: ClassVar[frozenset[str]] = frozenset()  # PredictOptions fields this task understands
    runtime_outputs: ClassVar[str] = ""  # the inspector.runtime output reader of its exported model
    parity: ClassVar[ParityRule | None] = None  # None: the task cannot be exported
    columns: ClassVar[tuple[Column, ...]] = ()  # its summary figures in run tables
    evaluation_type: ClassVar[Any] = None  # the typed evaluation.json: a class with from_dict(data)
    predicts_classes: ClassVar[bool] = False  # its predictions name a class: confusion matrices, paired tests
    heatmap_caption: ClassVar[str] = "heatmap"  # what the predictor's heatmap shows, in a few words
    # The live view: does training report epochs worth a curve, and which EpochEnd figure is its best so far
    # (field name, label); None: the task reports only progress (e.g. one pass over the good images).
    live_curves: ClassVar[bool] = False
    live_best: ClassVar[tuple[str, str] | None] = None

    # -- training --------------------------------------------------------------------------
    def check_dataset(self, dataset: LabeledDataset, config: TrainConfig) -> None:
        """Raise InspectorError, in plain words, when the data cannot train this task."""

    def check_domains(self, dataset: LabeledDataset, domains: Any, config: TrainConfig) -> None:
        """With another line's images (training.Domains: source, unlabeled): raise InspectorError, in
        plain words, when this task cannot use them or the data cannot train it. The default: not used."""
        raise InspectorError(f"{self.name} runs do not learn from another line's images or from unlabelled "
                             "images; leave out the source and the unlabelled images.")

    def scale(self, config: TrainConfig, dataset: LabeledDataset):
        """How the images become model inputs (inspector.scale.ScaleChoice: whole images or tiles, and
        why). The default: whole images, resized to the input as always; a defect size or regions are
        refused in plain words (a task that reads them overrides this)."""
        from ..scale import ScaleChoice

        if config.defect_size is not None or config.regions:
            raise InspectorError(f"--defect-size and regions to inspect or ignore are not read by {self.name} runs: "
                                 "they look at the whole image resized to the input. Leave them out (anomaly runs "
                                 "read both, classification runs --defect-size).")
        return ScaleChoice(None, "whole images resized to the model's input")

    def strategies(self) -> dict[str, str]:
        """The strategies a user can choose (name -> one line); "auto" is always allowed."""
        return {}

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
                     device: torch.device, on_images: Callable[[int], None] | None = None) -> float | None:
        """Milliseconds per image for the kept model at batch 32 (the Compare page); None: not measured.
        on_images(n): n more images timed (the run's progress)."""
        return None

    def evaluation_work(self, model: torch.nn.Module, n_images: int, config: TrainConfig) -> list:
        """The planned work after fitting (`evaluate`, `inference_ms`) as engine.progress.Work steps of
        the phase "evaluation", for the run's ETA. The default: none planned (the tracker then adds
        the phase when it starts; the contract layer imports nothing of the engine)."""
        return []

    def live_figures(self, events: Sequence[Any]) -> list[tuple[str, str]]:
        """(label, formatted value) pairs for the live panel while a run of this task trains, from its
        typed events so far (engine.events); "-" for a figure not known yet. The default: none."""
        return []

    # -- reading what training stored ------------------------------------------------------
    def read_evaluation(self, data: dict[str, Any] | None) -> Any:
        """The typed view of this task's stored evaluation.json (None stays None): its
        `evaluation_type.from_dict`. Raises KeyError/TypeError on a report of another shape."""
        return self.evaluation_type.from_dict(data) if data and self.evaluation_type is not None else None

    def headline(self, summary: RunSummary) -> str:
        """The run's main figure in a few words for run labels, e.g. "93%" ("" when there is none)."""
        return ""

    def result_words(self, summary: RunSummary) -> str:
        """A finished run's figures in one Markdown phrase (the live view)."""
        return ""

    # -- predicting ------------------------------------------------------------------------
    def load_predictor(self, recipe: dict[str, Any], state: dict[str, torch.Tensor], device: torch.device,
                       **options: Any):
        """A ready predictor from a stored recipe and weights (no pickle, no training code)."""
        raise NotImplementedError

    def check_options(self, options: PredictOptions) -> None:
        """Refuse, in plain words, the options that go with another task."""
        foreign = [flag for key, flag in options.given().items() if key not in self.accepts]
        if foreign:
            raise InspectorError(f"{' and '.join(foreign)} {'do' if len(foreign) > 1 else 'does'} not apply to "
                                 f"{self.name} runs; {self.options_hint()}")

    def options_hint(self) -> str:
        """One sentence on the options this task does take."""
        return "this run takes no prediction options."

    def configure(self, predictor, options: PredictOptions):
        """The predictor with the options applied (after check_options); the default keeps it."""
        self.check_options(options)
        return predictor

    def result_header(self, predictor) -> dict[str, Any]:
        """The top-level fields of `predict --json` and the service's /model beside the rows."""
        return {"task": self.name, "classes": list(predictor.classes)}

    def result_rows(self, predictor, images: Sequence[np.ndarray], options: PredictOptions) -> list[dict[str, Any]]:
        """One result row per RGB image (`predict --json`, CSV, the service, the Inspect page): the
        task's `model_rows` in the one verdict vocabulary of every model (runtime.rows.guard_rows:
        label, verdict OK / NG / UNSURE, reason), as the exported bundle gives them. Not a hook."""
        from ..runtime.rows import guard_rows

        images = list(images)
        return guard_rows(self.model_rows(predictor, images, options), images)

    def model_rows(self, predictor, images: list[np.ndarray], options: PredictOptions) -> list[dict[str, Any]]:
        """The model's own result row per RGB image, built by the runtime's one row builder
        (runtime.rows) so the exported bundle gives the same rows."""
        raise NotImplementedError

    def decision_rule(self, predictor, options: PredictOptions) -> dict[str, Any]:
        """How OK/NG is decided, for the service's /model: ok_classes, threshold (and the task's own)."""
        return {}

    def describe_row(self, row: dict[str, Any]) -> str:
        """One result row as a short line for the terminal."""
        return str(row)

    def row_words(self, row: dict[str, Any]) -> str:
        """One result row in Markdown words for the app, after its OK/NG badge."""
        return self.describe_row(row)

    def evaluate_predictor(self, predictor, dataset: LabeledDataset, options: PredictOptions,
                           source: str) -> dict[str, Any]:
        """`inspector evaluate`: the report of a trained run on labelled data."""
        raise InspectorError(f"{self.name} runs cannot be evaluated on new data yet.")

    def evaluation_lines(self, report: dict[str, Any]) -> list[str]:
        """The evaluate report in a few lines of text."""
        return []

    def evaluation_table(self, report: dict[str, Any]) -> tuple[list[str], list[list[Any]]] | None:
        """(header, rows) of a table to print under the evaluation lines; None: no table."""
        return None

    # -- export ----------------------------------------------------------------------------
    def export_graph(self, predictor, path):
        """Write the model as ONNX at `path` (uint8 NHWC resized image in); an ExportedGraph."""
        raise InspectorError(f"Runs of the task '{self.name}' cannot be exported yet.")

    def bundle_labels(self, predictor, ok_classes: Sequence[str], threshold: float) -> dict[str, Any]:
        """The task's fields of the bundle's labels.json (the runtime reads them)."""
        return {}


TASKS: dict[str, type[Task]] = {}
DEFAULT_TASK = "classification"
_loaded = False


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make a Task subclass available by its `name`. A second, different class
    under a name already taken is an error (it would silently replace the first)."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} needs a class attribute `name` to be registered as a task.")
    if name in TASKS and TASKS[name] is not cls:
        raise ValueError(f"A task named '{name}' is already registered ({TASKS[name].__module__}."
                         f"{TASKS[name].__name__}); choose another name.")
    TASKS[name] = cls
    return cls


def _load_tasks() -> None:
    """Import the built-in tasks and the entry-point plugins once (they register themselves)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_TASKS:
        importlib.import_module(module)
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        entry.load()


def list_tasks() -> dict[str, str]:
    """name -> one-line explanation: the built-in tasks first, in BUILTIN_TASKS' order (the first is
    the default everywhere), then the others as they registered. Import order never reorders them."""
    _load_tasks()
    builtin = [module.rpartition(".")[2] for module in BUILTIN_TASKS]
    order = sorted(TASKS, key=lambda name: builtin.index(name) if name in builtin else len(builtin))
    return {name: TASKS[name].summary for name in order}


def create_task(name: str | None) -> Task:
    """The task of that name (None: the default, classification). Raises InspectorError if unknown."""
    _load_tasks()
    name = name or DEFAULT_TASK
    if name not in TASKS:
        raise InspectorError(f"Unknown task '{name}'. Choose one of: {', '.join(TASKS)}.")
    return TASKS[name]()


def task_of_recipe(recipe: dict[str, Any]) -> Task:
    """The task a stored model belongs to; runs from before tasks existed are classification."""
    return create_task(recipe.get("task") or DEFAULT_TASK)


__all__ = ["BUILTIN_TASKS", "Column", "DEFAULT_TASK", "Evaluation", "ParityRule", "PredictOptions", "Predictor", "TASKS", "Task",
           "bit_depth_of", "create_task", "decode_for", "list_tasks", "register_task", "task_of_recipe"]
