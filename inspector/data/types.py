"""Small shared vocabulary of the data package (kept apart to avoid import cycles)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..runtime.images import is_ignored_name  # one rule for datasets, `inspector predict` and the bundle

__all__ = ["Skipped", "display_path", "is_ignored_name"]


@dataclass(frozen=True)
class Skipped:
    """A file that was not used, and why (``path`` is relative to the dataset root if possible)."""

    path: str
    reason: str


def display_path(path: Path, root: Path | None) -> str:
    """Path as the user knows it: relative to the dataset root where possible."""
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return str(path)
