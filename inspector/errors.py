"""The one exception type a user's mistake raises, with a message a quality engineer understands."""
from __future__ import annotations


class InspectorError(Exception):
    """A problem the user can fix: bad file, wrong folder, unknown backbone, no network...

    The CLI prints it on one line and exits non-zero; the app shows it as an error box.
    """


class ImageLoadError(InspectorError):
    """One image could not be read; the message says why (used as a skip reason)."""


class UnsafeArchiveError(InspectorError):
    """A zip archive is unsafe or too large to extract."""
