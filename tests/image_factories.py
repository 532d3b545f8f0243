"""Helpers that synthesise test images, folders and zips (always under pytest's tmp_path)."""
from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

FORMAT_BY_SUFFIX = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP",
                    ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP", ".gif": "GIF"}


def rgb_image(width: int = 40, height: int = 30, color: tuple[int, int, int] = (200, 40, 10)) -> Image.Image:
    return Image.new("RGB", (width, height), color)


def image_bytes(img: Image.Image, fmt: str = "PNG", **save_kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save_kwargs)
    return buf.getvalue()


def write_image(path: Path, img: Image.Image | None = None, **save_kwargs) -> Path:
    """Save ``img`` (default: a small RGB image) in the format the suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = img if img is not None else rgb_image()
    path.write_bytes(image_bytes(img, FORMAT_BY_SUFFIX[path.suffix.lower()], **save_kwargs))
    return path


def noise_image(seed: int, size: int = 48) -> Image.Image:
    """A random RGB image: distinct seeds give distinct files (no accidental duplicates)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def make_class_tree(root: Path, counts: dict[str, int], suffix: str = ".png") -> Path:
    """``root/<class>/img<i><suffix>`` with distinct random images."""
    seed = 0
    for label, n in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            seed += 1
            write_image(root / label / f"img{i}{suffix}", noise_image(seed))
    return root


def ramp_16bit(max_value: int, width: int = 256, height: int = 8) -> Image.Image:
    """Grey horizontal ramp 0..max_value in a 16-bit ("I;16") image."""
    row = np.linspace(0, max_value, width).round().astype(np.uint16)
    return Image.fromarray(np.tile(row, (height, 1)))  # uint16 -> "I;16"


def png_with_claimed_size(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR is patched to claim ``width`` x ``height`` (CRC fixed)."""
    data = bytearray(image_bytes(Image.new("L", (1, 1)), "PNG"))
    ihdr_start = 8 + 4  # signature, chunk length
    chunk = bytes(data[ihdr_start:ihdr_start + 4 + 13])  # type + 13 bytes of fields
    patched = chunk[:4] + struct.pack(">II", width, height) + chunk[12:]
    data[ihdr_start:ihdr_start + 17] = patched
    data[ihdr_start + 17:ihdr_start + 21] = struct.pack(">I", zlib.crc32(patched))
    return bytes(data)


def jpeg_with_orientation(width: int, height: int, orientation: int) -> bytes:
    img = rgb_image(width, height)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return image_bytes(img, "JPEG", exif=exif.tobytes())


def animated_gif(colors: list[tuple[int, int, int]], size: tuple[int, int] = (16, 16)) -> bytes:
    frames = [Image.new("RGB", size, c) for c in colors]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buf.getvalue()


def make_zip(path: Path, entries: dict[str, bytes | None], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """Zip with entries written verbatim (crafted names allowed); ``None`` makes a folder entry."""
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)  # ZipInfo keeps '..', '/' and '\\' as given on POSIX
            info.compress_type = compression
            if data is None:
                info.external_attr = 0o40775 << 16 | 0x10
                zf.writestr(info, b"")
            else:
                zf.writestr(info, data)
    return path


def patch_bytes(path: Path, old: bytes, new: bytes) -> None:
    """Replace every occurrence of ``old`` by ``new`` (same length) in a file."""
    assert len(old) == len(new)
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new))
