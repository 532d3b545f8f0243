"""Small shared vocabulary of the data package (kept apart to avoid import cycles)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Skipped", "display_path", "is_ignored_name"]

# Files operating systems and archivers leave behind; never data, never worth a warning.
_OS_LITTER = frozenset({"thumbs.db", "desktop.ini", ".ds_store", "__macosx", "$recycle.bin"})


@dataclass(frozen=True)
class Skipped:
    """A file that was not used, and why (``path`` is relative to the dataset root if possible)."""

    path: str
    reason: str


def is_ignored_name(name: str) -> bool:
    """True for hidden files/folders (``.`` prefix) and OS litter such as ``Thumbs.db``.

    These are ignored silently: users did not put them there on purpose.
    """
    return name.startswith(".") or name.lower() in _OS_LITTER


def display_path(path: Path, root: Path | None) -> str:
    """Path as the user knows it: relative to the dataset root where possible."""
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return str(path)
