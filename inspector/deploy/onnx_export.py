"""The ONNX export of a trained run: the task's own graph (`Task.export_graph`), found from the run.

The graphs live in their task folders (`tasks/classification/export.py`, `tasks/anomaly/export.py`)
and the shared plumbing in `engine/onnx.py`; this module finds a run's task and its exporter. The
names below stay importable from here for existing callers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..engine.onnx import INPUT_NAME, OPSET, OUTPUT_NAME, ExportedGraph, export_onnx
from ..errors import InspectorError
from ..tasks.base import DEFAULT_TASK, create_task, list_tasks
from ..tasks.classification.export import ExportableClassifier, stacked_dihedral_views

Exporter = Callable[[Any, Path], ExportedGraph]  # (Predictor, onnx_path) -> ExportedGraph


def list_exporters() -> list[str]:
    """The tasks whose runs can be exported (those with a parity rule)."""
    return sorted(name for name in list_tasks() if create_task(name).parity is not None)


def create_exporter(task: str) -> Exporter:
    """The export function of `task`'s runs. Raises InspectorError for a task that cannot export."""
    if task not in list_exporters():
        raise InspectorError(f"Runs of the task '{task}' cannot be exported yet; exportable tasks: "
                             f"{', '.join(list_exporters())}.")
    return create_task(task).export_graph


def task_of_run(run_dir: str | Path) -> str:
    """The run's task from its model.json (runs stored before tasks existed are classification)."""
    from .._io import read_json
    from ..runs import MODEL_FILE

    try:
        return str(read_json(Path(run_dir) / MODEL_FILE).get("task") or DEFAULT_TASK)
    except Exception:  # noqa: BLE001 - no model yet: loading the predictor says so plainly
        return DEFAULT_TASK


def load_run_predictor(run_dir: str | Path) -> Any:
    """The run's predictor on the CPU, for any task the library knows."""
    from ..inference import load_predictor

    return load_predictor(run_dir, device="cpu")


__all__ = ["INPUT_NAME", "OPSET", "OUTPUT_NAME", "ExportableClassifier", "ExportedGraph", "Exporter",
           "create_exporter", "export_onnx", "list_exporters", "load_run_predictor", "stacked_dihedral_views",
           "task_of_run"]
