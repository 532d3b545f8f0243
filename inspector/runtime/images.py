"""Safe image loading: any file a plant engineer has becomes an RGB image or one clear reason.

Every failure is an :class:`~inspector.runtime.errors.ImageLoadError` whose message is a short,
plain-English reason (it is shown to users as the skip reason of a file).
"""
from __future__ import annotations

import errno
import hashlib
import io
import os
import math
import re
import stat
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageLoadError, ImageTooLargeError, InspectorError

__all__ = [
    "BIT_DEPTHS",
    "IMAGE_EXTENSIONS",
    "MAX_MEGAPIXELS_ENV",
    "broken_link_reason",
    "is_ignored_name",
    "is_mask_folder",
    "MAX_IMAGE_PIXELS",
    "content_hash",
    "dataset_bit_depth",
    "image_bit_depth",
    "is_image_path",
    "load_image",
    "max_pixels",
    "megapixels",
    "pixel_limit",
    "read_bytes",
    "to_rgb_array",
    "walk_files",
]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
)
MAX_IMAGE_PIXELS = 80_000_000  # the default limit per image; see max_pixels()
MAX_MEGAPIXELS_ENV = "INSPECTOR_MAX_MEGAPIXELS"

# Decoders we trust with arbitrary bytes. Restricting Image.open to these keeps exotic
# plugins (EPS runs Ghostscript, for instance) away from user files. The JPEG opener
# also returns the multi-picture (MPO) images many phones write.
_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF")
# Bit depths a 16-bit container may really hold (cameras write 10, 12 or 14 bit data).
BIT_DEPTHS = (8, 10, 12, 14, 16)
_HIGH_BIT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")
_WHITE = (255, 255, 255)
_NO_MEMORY = "not enough memory to decode the image"


def is_image_path(path: str | os.PathLike) -> bool:
    """True if the file name has one of :data:`IMAGE_EXTENSIONS` (any letter case)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


# Files operating systems and archivers leave behind; never data, never worth a warning.
_OS_LITTER = frozenset({"thumbs.db", "desktop.ini", ".ds_store", "__macosx", "$recycle.bin"})


def is_ignored_name(name: str) -> bool:
    """True for hidden files/folders (``.`` prefix) and OS litter such as ``Thumbs.db``.

    These are ignored silently: users did not put them there on purpose.
    """
    return name.startswith(".") or name.lower() in _OS_LITTER


# Folders of defect masks (MVTec's ground_truth/ and the like): never photos of parts.
_MASK_FOLDERS = frozenset({"ground_truth", "groundtruth", "ground-truth", "ground truth", "masks", "mask"})


def is_mask_folder(name: str) -> bool:
    """A folder named like one of defect masks (ground_truth, masks, ...; any case): never photos.
    One rule for datasets (data/layouts.py), `inspector predict` and the bundle's predict.py."""
    return name.strip().lower() in _MASK_FOLDERS


def walk_files(folder: str | os.PathLike) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Every visible file below ``folder``, following symbolic links to files and folders.

    Returns ``(files, left_out)``: the files as reached (paths under ``folder``; in each folder
    the real entries in name order, then the links) and ``(path, reason)`` for everything else that was not used.
    Hidden entries and OS litter are ignored silently (:func:`is_ignored_name`). Each folder is
    walked once, so a link back to a folder above it cannot loop and a link to a folder already
    walked is not walked again; a file reached twice (two links to it) is listed once. Broken
    links, unreadable folders and the links not followed are in ``left_out`` with the reason.
    """
    top = Path(folder)
    files: list[Path] = []
    left_out: list[tuple[Path, str]] = []
    try:
        seen_dirs: dict[tuple[int, int], Path] = {_identity(os.stat(top)): top}
    except OSError as exc:
        return files, [(top, _link_or_os_reason(top, exc))]
    seen_files: dict[tuple[int, int], Path] = {}
    stack = [top]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                # Links after the real entries: of a file reached twice, the real one is kept.
                names = [n for _, n in sorted((e.is_symlink(), e.name) for e in entries if not is_ignored_name(e.name))]
        except OSError as exc:
            left_out.append((current, f"folder could not be opened ({exc.strerror or exc})"))
            continue
        sub_folders: list[Path] = []
        for name in names:
            path = current / name
            try:
                info = os.stat(path)  # follows links
            except OSError as exc:
                left_out.append((path, _link_or_os_reason(path, exc)))
                continue
            key = _identity(info)
            if stat.S_ISDIR(info.st_mode):
                first = seen_dirs.get(key)
                if first is None:
                    seen_dirs[key] = path
                    sub_folders.append(path)
                elif first == top or first in path.parents:
                    left_out.append((path, f"link back to the folder '{first.name}' above it (not followed: it would loop)"))
                else:
                    left_out.append((path, f"link to a folder already included as '{first}'"))
            elif key in seen_files and info.st_ino:
                left_out.append((path, f"the same file as '{seen_files[key]}' (used once)"))
            else:
                seen_files[key] = path
                files.append(path)
        stack.extend(reversed(sub_folders))
    return files, left_out


def broken_link_reason(path: str | os.PathLike) -> str | None:
    """The skip reason of a symbolic link that points nowhere, or None if ``path`` is no broken link."""
    path = Path(path)
    try:
        if not path.is_symlink():
            return None
        os.stat(path)
        return None
    except OSError as exc:
        return _link_or_os_reason(path, exc)


def _identity(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def _link_or_os_reason(path: Path, exc: OSError) -> str:
    if path.is_symlink():
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        if exc.errno == errno.ELOOP:  # links pointing at each other
            return f"broken link (points to '{target}', a chain of links that loops)"
        if isinstance(exc, FileNotFoundError):
            return f"broken link (points to '{target}', which does not exist)"
        return f"broken link (points to '{target}', which cannot be opened: {exc.strerror or exc})"
    return f"could not be read ({exc.strerror or exc})"


def content_hash(data: bytes) -> str:
    """SHA-256 hex digest of a file's bytes (duplicate detection, feature caches)."""
    return hashlib.sha256(data).hexdigest()


def read_bytes(path: str | os.PathLike) -> bytes:
    """Read a whole file, turning every OS problem into an :class:`ImageLoadError`."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageLoadError("file not found") from None
    except IsADirectoryError:
        raise ImageLoadError("is a folder, not a file") from None
    except MemoryError:
        raise ImageLoadError("file too large to read into memory") from None
    except PermissionError:
        raise ImageLoadError("permission denied (is the file open in another program?)") from None
    except (OSError, ValueError) as exc:  # ValueError: NUL byte in the path
        raise ImageLoadError(f"could not read the file ({exc})") from None


def megapixels(text: str | float, name: str = "--max-megapixels") -> float:
    """A positive, finite number of megapixels from ``text``; else a plain InspectorError naming ``name``."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise InspectorError(f"{name} must be a positive number of megapixels (e.g. 120), not '{text}'.")
    return value


def max_pixels() -> int:
    """The one pixel limit per image of every entry point (library, CLI, app, service, bundle).

    ``INSPECTOR_MAX_MEGAPIXELS`` (megapixels; the CLI's ``--max-megapixels`` sets it) when set, else
    :data:`MAX_IMAGE_PIXELS` (80 MP). A bad value is a plain InspectorError naming the variable.
    """
    text = os.environ.get(MAX_MEGAPIXELS_ENV, "").strip()
    if not text:
        return MAX_IMAGE_PIXELS
    return max(1, int(round(megapixels(text, MAX_MEGAPIXELS_ENV) * 1e6)))


_limit_in_use = max_pixels  # load_image's argument of the same name hides the function


@contextmanager
def pixel_limit(value: str | float | None) -> Iterator[None]:
    """Run a command with ``--max-megapixels value`` (None: leave the limit as it is).

    Sets ``INSPECTOR_MAX_MEGAPIXELS`` for the duration (child processes such as torchrun ranks and
    the service inherit it) and restores the previous value afterwards. The limit in use is
    validated first, so a bad variable is one plain error before any work starts.
    """
    before = os.environ.get(MAX_MEGAPIXELS_ENV)
    if value is not None:
        os.environ[MAX_MEGAPIXELS_ENV] = f"{megapixels(value):g}"
    try:
        max_pixels()
        yield
    finally:
        if before is None:
            os.environ.pop(MAX_MEGAPIXELS_ENV, None)
        else:
            os.environ[MAX_MEGAPIXELS_ENV] = before


def load_image(
    source: str | os.PathLike | bytes, *, max_pixels: int | None = None, bit_depth: int | None = None
) -> Image.Image:
    """Decode a file (path or bytes) into a fully loaded RGB image.

    - EXIF orientation is applied, so phone photos come out upright.
    - Transparency is composited onto white (cut-out product shots usually sit on white).
    - 16/32-bit grey images (a camera's 10-16 bit data) become 8 bit by one fixed, monotonic
      mapping: value * 255 / (2**bit_depth - 1), clipped. ``bit_depth`` is the camera's, the same
      for every image of a dataset and of the model trained on it (:func:`dataset_bit_depth`
      infers it once; a run stores it in its preprocessing). So an image at half the exposure is
      half as bright, as in an 8-bit file. ``None`` (no dataset context, runs stored before the
      setting existed) guesses per image: the smallest of 8..16 bits holding its brightest value.
      Float images in [0, 1] are scaled by 255; signed data or data beyond 16 bits is
      stretched over the range it uses.
    - Animated GIF/WebP and multi-page TIFF: the first frame.
    - The pixel count is checked from the header before decoding (decompression bombs) against
      ``max_pixels``, by default the one limit :func:`max_pixels` (``--max-megapixels`` or
      ``INSPECTOR_MAX_MEGAPIXELS``, else 80 MP). This check replaces Pillow's own for the call, so
      no DecompressionBombWarning/Error reaches the terminal and a raised limit really applies.

    Raises:
        ImageLoadError: with a short plain-English reason (ImageTooLargeError over the limit).
        InspectorError: only when ``INSPECTOR_MAX_MEGAPIXELS`` is not a positive number.
    """
    limit = _limit_in_use() if max_pixels is None else max_pixels
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        data = read_bytes(source)
    if not data:
        raise ImageLoadError("empty file")
    with _our_bomb_check(), _open(data, limit) as im:
        _decode(im, limit)
        return _convert(im, bit_depth)


def image_bit_depth(source: str | os.PathLike | bytes, *, max_pixels: int | None = None) -> int | None:
    """The bits per value a high-bit-depth grey image uses (10, 12, 14 or 16: the fewest that hold
    its brightest value; a 16-bit file is never taken for 8-bit camera data), or None for an
    8-bit or float image. Reads the header first, so an 8-bit file is not decoded.

    Raises ImageLoadError as :func:`load_image`.
    """
    limit = _limit_in_use() if max_pixels is None else max_pixels
    data = bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else read_bytes(source)
    with _our_bomb_check(), _open(data, limit) as im:
        if im.mode not in _HIGH_BIT_MODES:
            return None
        _decode(im, limit)
        values = np.asarray(im)
    high = int(values.max()) if values.size else 0
    if values.size and int(values.min()) < 0 or high > 2**16 - 1:
        return None  # signed or beyond 16 bits: not camera counts; load_image stretches it
    return next(b for b in BIT_DEPTHS[1:] if high <= 2**b - 1)


def dataset_bit_depth(depths: Iterable[int | None]) -> int | None:
    """One camera bit depth for a whole dataset from its images' :func:`image_bit_depth` values:
    the most any image uses (so the brightest image of the set keeps its brightness), None when no
    image is high-bit-depth. Pass it to every :func:`load_image` of the dataset and its model."""
    used = [d for d in depths if d is not None]
    return max(used) if used else None


def to_rgb_array(img: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 C-contiguous, writable array of an image (converted to RGB if needed)."""
    rgb = img if img.mode == "RGB" else _to_rgb(img)
    return np.array(rgb, dtype=np.uint8, copy=True, order="C")


_PIL_LIMIT_LOCK = threading.Lock()
_pil_state = {"in_flight": 0, "saved": None}


@contextmanager
def _our_bomb_check() -> Iterator[None]:
    """Switch Pillow's global bomb check off while any load_image runs (ours on the header replaces it).

    Pillow's check would warn (DecompressionBombWarning on the terminal) or refuse at its own fixed
    limit whatever the user's limit is. Counted, so concurrent loads in threads restore the value
    Pillow had only when the last one ends; nothing is left changed afterwards.
    """
    with _PIL_LIMIT_LOCK:
        if _pil_state["in_flight"] == 0:
            _pil_state["saved"] = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
        _pil_state["in_flight"] += 1
    try:
        yield
    finally:
        with _PIL_LIMIT_LOCK:
            _pil_state["in_flight"] -= 1
            if _pil_state["in_flight"] == 0:
                Image.MAX_IMAGE_PIXELS = _pil_state["saved"]


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open (header only) and enforce the pixel limit before any pixel is decoded."""
    try:
        im = Image.open(io.BytesIO(data), formats=_FORMATS)
    except UnidentifiedImageError:
        raise ImageLoadError("not an image (or an unsupported format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow refuses before we can look (its global limit); report the size anyway.
        raise ImageTooLargeError(_too_large_message(_header_size(data), max_pixels, str(exc))) from None
    except MemoryError:
        raise ImageLoadError(_NO_MEMORY) from None
    except Exception:  # noqa: BLE001 - a recognised format with a broken header
        raise ImageLoadError("truncated or corrupt image data") from None
    width, height = im.size
    if width <= 0 or height <= 0:
        im.close()
        raise ImageLoadError("image has no pixels (0 width or height)")
    if width * height > max_pixels:
        im.close()
        raise ImageTooLargeError(_too_large_message((width, height), max_pixels))
    return im


def _decode(im: Image.Image, max_pixels: int) -> None:
    """Decode all pixels of the current frame (this is where damaged data shows)."""
    try:
        im.load()
    except MemoryError:
        raise ImageLoadError(_NO_MEMORY) from None
    except Exception:  # noqa: BLE001 - decoders raise anything on hostile bytes
        raise ImageLoadError("truncated or corrupt image data") from None
    width, height = im.size  # a GIF frame may reach beyond the size its header gave
    if width * height > max_pixels:
        raise ImageTooLargeError(_too_large_message((width, height), max_pixels))


def _convert(im: Image.Image, bit_depth: int | None = None) -> Image.Image:
    """Upright RGB copy of a decoded image."""
    try:
        return _to_rgb(_upright(im), bit_depth)
    except MemoryError:
        raise ImageLoadError(_NO_MEMORY) from None
    except Exception:  # noqa: BLE001 - e.g. a LAB TIFF Pillow cannot convert
        raise ImageLoadError(f"unsupported colour mode ({im.mode})") from None


def _header_size(data: bytes) -> tuple[int, int] | None:
    """Best effort: read width x height with the format plugin, bypassing Pillow's bomb check."""
    prefix = data[:16]
    for fmt in _FORMATS:
        factory, accept = Image.OPEN.get(fmt, (None, None))
        try:
            if factory is not None and (accept is None or accept(prefix) is True):
                return factory(io.BytesIO(data), None).size
        except Exception:  # noqa: BLE001 - only used to word an error message
            continue
    return None


def _too_large_message(size: tuple[int, int] | None, max_pixels: int, pil_message: str = "") -> str:
    limit = f"limit {max_pixels / 1e6:g} MP; raise it with --max-megapixels or INSPECTOR_MAX_MEGAPIXELS"
    if size is not None:
        return f"image too large: {size[0]} x {size[1]} pixels ({limit})"
    found = re.search(r"\((\d+) pixels\)", pil_message)
    pixels = f"{int(found.group(1)) / 1e6:.0f} MP" if found else "too many pixels"
    return f"image too large: {pixels} ({limit})"


def _upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block is ignored rather than fatal.

    Always returns a new image: the caller closes the opened one.
    """
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - the pixels are fine, only the metadata is not
        return im.copy()


def _to_rgb(im: Image.Image, bit_depth: int | None = None) -> Image.Image:
    """Convert any Pillow mode to RGB (alpha onto white, high bit depth rescaled)."""
    if im.mode == "RGB":
        return im
    if im.mode in _HIGH_BIT_MODES + ("F",):
        return Image.fromarray(_scale_to_uint8(np.asarray(im), bit_depth)).convert("RGB")
    if _has_alpha(im):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("LA", "La", "PA", "RGBA", "RGBa") or (
        im.mode in ("P", "L", "RGB") and "transparency" in im.info
    )


def _scale_to_uint8(arr: np.ndarray, bit_depth: int | None = None) -> np.ndarray:
    """Map a single-channel integer/float array onto 0..255 (see :func:`load_image`)."""
    values = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if arr.dtype.kind == "f" and low >= 0.0 and high <= 1.0:
        scaled = values * 255.0
    elif low >= 0.0 and high <= 2**16 - 1:
        # The dataset's camera depth when known (one mapping for all images), else this image's guess.
        bits = bit_depth or next(b for b in BIT_DEPTHS if high <= 2**b - 1)
        scaled = values * (255.0 / (2**bits - 1))
    elif high > low:
        # Signed or >16-bit data in arbitrary units: stretch the range actually used.
        scaled = (values - low) * (255.0 / (high - low))
    else:
        scaled = np.zeros_like(values)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
