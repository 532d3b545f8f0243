"""Safe image loading (re-exported): the code lives in `inspector.runtime.images`, which the
exported bundle carries too, so the app and a line PC decode a file the same way."""
from __future__ import annotations

from ..runtime.images import (
    IMAGE_EXTENSIONS,
    MAX_IMAGE_PIXELS,
    content_hash,
    is_image_path,
    load_image,
    read_bytes,
    to_rgb_array,
)
from ..runtime.errors import ImageLoadError

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_PIXELS",
    "ImageLoadError",
    "content_hash",
    "is_image_path",
    "load_image",
    "read_bytes",
    "to_rgb_array",
]
