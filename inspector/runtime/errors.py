"""The runtime's exception types; `inspector.errors` re-exports these very classes.

Kept here so the exported bundle (which carries this package and nothing else of inspector)
raises the same types the library does.
"""
from __future__ import annotations


class InspectorError(Exception):
    """A problem the user can fix: bad file, wrong folder, unknown backbone, no network...

    The CLI prints it on one line and exits non-zero; the app shows it as an error box.
    """


class ImageLoadError(InspectorError):
    """One image could not be read; the message says why (used as a skip reason)."""


class ImageTooLargeError(ImageLoadError):
    """An image has more pixels than the limit in use (`images.max_pixels`); the service answers 413."""
