"""The one summary of a finished run: built once by the trainer, stored in run.json, returned by
`train()`, carried by the TrainEnd event and printed by the CLI. Everyone reads this type."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .evaluation import interval_warning


@dataclass(frozen=True)
class RunSummary:
    """Common figures of every task, plus the task's own metrics (flat in the stored JSON)."""

    task: str = "classification"
    n_images: int = 0
    classes: list[str] = field(default_factory=list)
    validation: str = ""
    train_seconds: float = 0.0
    best_epoch: int | None = None
    params_m: float | None = None
    inference_ms_per_image: float | None = None
    # Classification: val_accuracy, val_accuracy_ci, val_macro_f1. Anomaly: n_good, threshold, target_frr,
    # val_auroc, ... Stored flat beside the common fields.
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def val_accuracy(self) -> float | None:
        return self.metrics.get("val_accuracy")

    @property
    def val_accuracy_ci(self) -> list[float] | None:
        return self.metrics.get("val_accuracy_ci")

    @property
    def val_macro_f1(self) -> float | None:
        return self.metrics.get("val_macro_f1")

    def value(self, key: str) -> Any:
        """A common field or a task metric by its stored name (None when absent): what a table
        column (`tasks.base.Column`) shows."""
        if key != "metrics" and key in {f.name for f in dataclasses.fields(self)}:
            return getattr(self, key)
        return self.metrics.get(key)

    @property
    def warning(self) -> str | None:
        """A plain warning when the accuracy interval is too wide to trust."""
        return interval_warning(self.val_accuracy_ci)

    @property
    def warnings(self) -> list[str]:
        """Every warning of this run, in plain sentences, for every front end to show the same list:
        the accuracy interval's (classification), the false-reject guarantee's (anomaly: frr_warning)
        and any task metric named `*_warning` / `warnings`."""
        found = [self.warning]
        for key, value in self.metrics.items():
            if key == "warnings" and isinstance(value, (list, tuple)):
                found.extend(str(v) for v in value)
            elif key.endswith("_warning") and isinstance(value, str):
                found.append(value)
        return list(dict.fromkeys(w for w in found if w))

    def to_dict(self) -> dict[str, Any]:
        common = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "metrics"}
        return {**common, **self.metrics}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        """Reads old runs too: a summary without a task is a classification summary."""
        names = {f.name for f in dataclasses.fields(cls)} - {"metrics"}
        common = {k: v for k, v in data.items() if k in names}
        return cls(**common, metrics={k: v for k, v in data.items() if k not in names})
