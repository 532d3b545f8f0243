"""Atomic file writes: a reader sees the old file or the new one, never half of one.

A write that fails for a reason the user can fix (disk full, read-only folder, no permission)
raises :class:`StorageError`: the project's own error with a plain message, and still an
``OSError`` for code that catches those.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import InspectorError

# Why a write failed, and what a quality engineer can do about it.
_REASONS = {
    getattr(errno, name): reason for name, reason in (
        ("ENOSPC", "the disk is full. Free some space and try again"),
        ("EDQUOT", "the disk quota is used up. Free some space and try again"),
        ("EROFS", "the disk is read-only. Choose a folder on a writable disk"),
        ("EACCES", "permission denied. Choose a folder you may write to"),
        ("EPERM", "permission denied. Choose a folder you may write to"),
        ("ENAMETOOLONG", "the name is too long for this disk. Use a shorter name"),
    ) if hasattr(errno, name)  # not every platform defines every code
}


class StorageError(InspectorError, OSError):
    """Files could not be changed (disk full, read-only...); what was there before is untouched."""


def storage_error(exc: OSError, path: str | os.PathLike, action: str = "write") -> StorageError:
    """Turn an OSError from changing `path` into a StorageError with a plain reason."""
    if isinstance(exc, StorageError):
        return exc
    reason = _REASONS.get(exc.errno) or (exc.strerror or str(exc)).rstrip(".")
    error = StorageError(f"Cannot {action} '{path}': {reason}.")
    error.errno = exc.errno  # code that looks at the errno still can
    return error


@contextlib.contextmanager
def storage_errors(path: str | os.PathLike, action: str = "write") -> Iterator[None]:
    """Raise StorageError for any OSError while changing files at `path`."""
    try:
        yield
    except OSError as exc:
        raise storage_error(exc, path, action) from exc


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` for a temp file beside `path`, fsync it, then rename over `path`.

    Raises:
        StorageError: the write failed (disk full, read-only...); `path` is unchanged and the
            temp file is removed.
    """
    path = Path(path)
    with storage_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        with storage_errors(path):
            write(tmp)
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    text = json.dumps(data, indent=2, ensure_ascii=False, default=_jsonable)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
