"""Deprecated location: the OK/NG gate belongs to the anomaly task (inspector/tasks/anomaly/gate.py)."""
from __future__ import annotations

from .tasks.anomaly.gate import describe, gate_row

__all__ = ["describe", "gate_row"]
