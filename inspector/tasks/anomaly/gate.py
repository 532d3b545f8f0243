"""The OK/NG gate of the anomaly task: an anomaly model decides OK or NG, a classifier names the defect type."""
from __future__ import annotations

from typing import Any


def gate_row(anomaly: dict[str, Any], defect_type: Any | None) -> dict[str, Any]:
    """One image's verdict from an anomaly prediction (its to_dict()) and, optionally, the
    classifier's Prediction.

    NG exactly when the anomaly score passes the threshold; the classifier never overrules it, it
    only says what the defect looks like (its most likely class)."""
    row = dict(anomaly)
    if defect_type is not None:
        row.update(defect_type=defect_type.label, defect_type_confidence=defect_type.confidence,
                   probabilities=defect_type.probabilities)
    return row


def describe(row: dict[str, Any]) -> str:
    """'NG, anomaly 0.83, looks like: crack 78%' (or 'OK, anomaly 0.21')."""
    text = f"{row['verdict']}, anomaly {row['score']:.2f}"
    if row["verdict"] == "NG" and row.get("defect_type"):
        text += f", looks like: {row['defect_type']} {row['defect_type_confidence']:.0%}"
    return text + (f" ({row['reason']})" if row.get("reason") else "")
