"""Safe zip extraction: no zip slip, no zip bombs, no half-written files.

Quality engineers send zips made on Windows (backslash separators, legacy code pages),
macOS (``__MACOSX`` litter) and phones; half-copied zips are common too. Every problem is
either an :class:`~inspector.errors.InspectorError` for the whole archive or a
:class:`Skipped` record for one entry.
"""
from __future__ import annotations

import os
import re
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from inspector.data.types import Skipped, is_ignored_name
from inspector.errors import InspectorError, UnsafeArchiveError

__all__ = ["extract_zip"]

_CHUNK = 1 << 20
# Small entries cannot be bombs, and tiny files of one colour legitimately compress
# by far more than any sane ratio limit, so the ratio is only checked above this size.
_RATIO_MIN_BYTES = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class _Entry:
    """One zip member with its cleaned-up relative path."""

    info: zipfile.ZipInfo
    parts: tuple[str, ...]
    is_dir: bool  # from the cleaned name: Windows zips end folders with a backslash

    @property
    def name(self) -> str:
        return "/".join(self.parts)


def extract_zip(
    zip_path: str | os.PathLike,
    dest_dir: str | os.PathLike,
    *,
    max_files: int = 20_000,
    max_total_bytes: int = 4 * 2**30,
    max_ratio: float = 250,
) -> tuple[Path, list[Skipped]]:
    """Extract ``zip_path`` into ``dest_dir`` safely.

    Returns:
        ``(root, skipped)``: ``root`` is ``dest_dir``, or the single top-level folder if
        one folder wraps everything; ``skipped`` lists entries not extracted, with reasons.

    Raises:
        UnsafeArchiveError: too many files, too many bytes or a suspicious compression
            ratio (checked before anything is written, and again while writing because
            declared sizes can lie). Files written before the stop are removed.
        InspectorError: the file is missing, empty, not a zip or its index is damaged.
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    with _open_zip(Path(zip_path)) as zf:
        entries, skipped = _plan(zf)
        _check_limits(entries, max_files, max_total_bytes, max_ratio)
        written: list[Path] = []
        try:
            budget = _Budget(max_total_bytes)
            for entry in entries:
                problem = _extract_one(zf, entry, dest, budget, written)
                if problem:
                    skipped.append(Skipped(entry.name, problem))
        except BaseException:
            _remove(written)  # leave no partial dataset behind
            raise
    return _root(dest, entries), skipped


def _open_zip(path: Path) -> zipfile.ZipFile:
    """Open the archive, turning every failure into a plain message."""
    if not path.is_file():
        raise InspectorError(f"Zip file not found: {path}")
    if path.stat().st_size == 0:
        raise InspectorError(f"The zip file '{path.name}' is empty (0 bytes); was it copied completely?")
    try:
        return zipfile.ZipFile(path)
    except Exception:  # noqa: BLE001 - zipfile raises many types on garbage
        raise InspectorError(
            f"'{path.name}' is not a zip file or it is damaged (perhaps only partly copied)."
        ) from None


def _plan(zf: zipfile.ZipFile) -> tuple[list[_Entry], list[Skipped]]:
    """Sort members into entries to extract and unsafe ones; drop OS litter silently."""
    entries: list[_Entry] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()
    for info in zf.infolist():
        raw = _decode_name(info).replace("\\", "/")
        parts = _safe_parts(raw)
        if parts is None:
            skipped.append(Skipped(raw, "unsafe path in archive (points outside the extraction folder)"))
        elif parts and not any(is_ignored_name(p) for p in parts):
            entry = _Entry(info, parts, raw.endswith("/"))
            if entry.name in seen:
                skipped.append(Skipped(entry.name, "appears twice in the archive; the first copy was kept"))
            else:
                seen.add(entry.name)
                entries.append(entry)
    return entries, skipped


def _decode_name(info: zipfile.ZipInfo) -> str:
    """Member name; names without the UTF-8 flag that really are UTF-8 are fixed.

    Python decodes flagless names as cp437, but many Linux/macOS tools write UTF-8
    without setting the flag. Real cp437 names almost never form valid UTF-8.
    """
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return info.filename


def _safe_parts(name: str) -> tuple[str, ...] | None:
    """Path components of a member, or None if it would land outside the destination."""
    if name.startswith("/") or _DRIVE.match(name):
        return None
    parts = tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))
    if ".." in parts or any(_DRIVE.match(p) or "\x00" in p for p in parts):
        return None
    return parts


def _check_limits(entries: list[_Entry], max_files: int, max_total_bytes: int, max_ratio: float) -> None:
    """Refuse zip bombs from the declared sizes, before anything is written."""
    files = [e.info for e in entries if not e.is_dir]
    if len(files) > max_files:
        raise UnsafeArchiveError(f"The zip holds {len(files)} files; the limit is {max_files}.")
    total = sum(i.file_size for i in files)
    if total > max_total_bytes:
        raise UnsafeArchiveError(
            f"The zip would unpack to {_mb(total)}; the limit is {_mb(max_total_bytes)}."
        )
    for info in files:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size >= _RATIO_MIN_BYTES and ratio > max_ratio:
            raise UnsafeArchiveError(
                f"'{info.filename}' is compressed {ratio:.0f}:1 (limit {max_ratio:g}:1); "
                "this looks like a zip bomb, so nothing was extracted."
            )


def _extract_one(
    zf: zipfile.ZipFile, entry: _Entry, dest: Path, budget: _Budget, written: list[Path]
) -> str | None:
    """Write one member atomically; return a skip reason or None."""
    target = dest.joinpath(*entry.parts)
    try:
        if entry.is_dir:
            target.mkdir(parents=True, exist_ok=True)
            return None
        if entry.info.flag_bits & 0x1:
            return "password-protected entry (cannot be read)"
        target.parent.mkdir(parents=True, exist_ok=True)
        _stream(zf, entry, target, budget, written)
        return None
    except UnsafeArchiveError:
        raise
    except zipfile.BadZipFile:
        return "damaged inside the zip (checksum error)"
    except OSError as exc:
        return f"could not be written ({exc.strerror or exc})"
    except Exception:  # noqa: BLE001 - zlib.error, EOFError, NotImplementedError...
        return "damaged inside the zip or compressed with an unsupported method"


def _stream(zf: zipfile.ZipFile, entry: _Entry, target: Path, budget: _Budget, written: list[Path]) -> None:
    """Copy to a temporary name while counting real bytes, then rename into place."""
    tmp = target.with_name(f".{uuid.uuid4().hex}.part")
    try:
        with zf.open(entry.info) as src, open(tmp, "xb") as out:
            while chunk := src.read(_CHUNK):
                budget.take(len(chunk))
                out.write(chunk)
        os.replace(tmp, target)
        written.append(target)
    finally:
        tmp.unlink(missing_ok=True)


class _Budget:
    """Bytes that may still be written; counts what is really decompressed."""

    def __init__(self, max_bytes: int) -> None:
        self.left = max_bytes

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise UnsafeArchiveError("The zip unpacks to more data than allowed; extraction was stopped.")


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _root(dest: Path, entries: list[_Entry]) -> Path:
    """``dest``, or the single top-level folder that wraps every extracted entry."""
    tops = {e.parts[0] for e in entries}
    if len(tops) == 1:
        (top,) = tops
        if (dest / top).is_dir():
            return dest / top
    return dest


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB"
