"""The one exception type a user's mistake raises, with a message a quality engineer understands.

`InspectorError`, `ImageLoadError` and `ImageTooLargeError` are defined in `inspector.runtime.errors` (the exported
bundle raises them too) and are the very same classes here.
"""
from __future__ import annotations

from .runtime.errors import ImageLoadError, ImageTooLargeError, InspectorError

__all__ = ["ImageLoadError", "ImageTooLargeError", "InspectorError", "UnsafeArchiveError"]


class UnsafeArchiveError(InspectorError):
    """A zip archive is unsafe or too large to extract."""
