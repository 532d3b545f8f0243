"""The workspace on disk: labeled images in `data/<class>/<image>` and training runs in `runs/`.

Everything the web app does to the user's images goes through here, so that a browser refresh
or an app restart loses nothing and no name a user types can reach outside the workspace:

    <root>/                 INSPECTOR_WORKSPACE, default ~/DefectInspector
      data/<class>/<image>  one folder per class (what `discover_dataset` reads)
      source/<class>/<image> another line's labelled images (domain adaptation: TrainConfig.source)
      unlabeled/<image>     this line's unlabelled images, flat (TrainConfig.unlabeled)
      regions.json          where to look: region of interest and regions to ignore (TrainConfig.regions)
      runs/                 the run store

Writes are atomic (a temp file in the same folder, then `os.replace`), class and file names
are sanitised, and every uploaded file is decoded once before it is saved: a file that is not
a usable image is skipped with a reason and never written.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tempfile
import threading
import unicodedata
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ._io import atomic_write_bytes, atomic_write_json, storage_errors
from .data import (
    IMAGE_EXTENSIONS,
    LabeledDataset,
    Skipped,
    discover_dataset,
    discover_images,
    extract_zip,
    load_image,
)
from .data.discovery import natural_key
from .data.images import content_hash
from .data.types import display_path, is_ignored_name
from .errors import ImageLoadError, InspectorError
from .runs import default_workspace_root
from .runtime.regions import Regions, read_mask_image

__all__ = ["DUPLICATE_CHOICES", "ImportReport", "Workspace", "default_workspace_root", "safe_class_name",
           "safe_file_name", "sample_data_dir"]

MAX_CLASS_NAME = 64
MAX_FILE_NAME = 120  # characters of the whole name, extension included
# Disks allow 255 bytes per name; UTF-8 needs up to 4 per character, and temporary names and
# "_2"-style suffixes add a few more: cut names by bytes as well as by characters.
MAX_NAME_BYTES = 200
# Upload limits, enforced here again whatever the browser or the web server let through.
# Per-image pixels are limited by load_image (MAX_IMAGE_PIXELS in data/images.py).
MAX_UPLOAD_MB = 500  # one file (image or zip); the same figure as server.maxUploadSize in .streamlit/config.toml
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 2**20
MAX_FILES_PER_UPLOAD = 5_000  # files in one upload, or entries in one zip
MAX_UPLOAD_TOTAL_BYTES = 2 * 2**30  # all files of one upload together, or a zip's unpacked contents
_FORBIDDEN = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$",
                     *(f"COM{i}" for i in "123456789¹²³"), *(f"LPT{i}" for i in "123456789¹²³")}
_REPO_SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"
_lock = threading.Lock()  # choosing a free file name and writing it is one step per process
# What an import does with an exact copy (same bytes) of an image already in the same class.
DUPLICATE_CHOICES = ("skip", "keep")


@dataclass
class ImportReport:
    """What one import did.

    ``saved`` maps each class to the file names written; ``copies`` counts, per class, the files
    that were exact copies (same bytes) of an image already in that class, or of one earlier in the
    same import: skipped, unless the import was told to keep them (``copies_kept``), in which case
    they are among ``saved`` too. ``skipped`` lists the files that are not usable images, and why.
    """

    saved: dict[str, list[str]] = field(default_factory=dict)
    copies: dict[str, int] = field(default_factory=dict)
    copies_kept: bool = False
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def n_saved(self) -> int:
        return sum(len(names) for names in self.saved.values())

    @property
    def n_copies(self) -> int:
        return sum(self.copies.values())

    @property
    def n_new(self) -> int:
        """Images saved that were not copies of one already there."""
        return self.n_saved - (self.n_copies if self.copies_kept else 0)

    def counts(self) -> dict[str, int]:
        """Images saved per class."""
        return {label: len(names) for label, names in self.saved.items()}

    def merge(self, other: ImportReport) -> ImportReport:
        for label, names in other.saved.items():
            self.saved.setdefault(label, []).extend(names)
        for label, n in other.copies.items():
            self.copies[label] = self.copies.get(label, 0) + n
        self.skipped.extend(other.skipped)
        self.copies_kept = self.copies_kept or other.copies_kept
        return self


class _ClassIndex:
    """The content hashes of one class folder's images, read lazily: only files of the same size as
    an incoming file are ever hashed, so checking an import against a big class stays cheap."""

    def __init__(self, files: Iterable[Path]) -> None:
        self._by_size: dict[int, list[Path]] = defaultdict(list)
        self._hashes: dict[Path, str] = {}
        for path in files:
            try:
                self._by_size[path.stat().st_size].append(path)
            except OSError:
                continue

    def find(self, size: int, digest: str) -> Path | None:
        """The file in the class with these bytes, or None."""
        for path in self._by_size.get(size, ()):
            if path not in self._hashes:
                try:
                    self._hashes[path] = _file_hash(path)
                except OSError:
                    self._hashes[path] = ""
            if self._hashes[path] == digest:
                return path
        return None

    def add(self, path: Path, size: int, digest: str) -> None:
        self._by_size[size].append(path)
        self._hashes[path] = digest


def _clean(text: str) -> str:
    """NFC, printable, no path separators or characters Windows forbids, no dots/spaces at the ends."""
    text = unicodedata.normalize("NFC", str(text))
    text = "".join(ch for ch in text if ch.isprintable())
    text = _FORBIDDEN.sub("_", text)
    return text.lstrip("._ ").rstrip(". ")


def _cut(text: str, max_chars: int, max_bytes: int = MAX_NAME_BYTES) -> str:
    """At most `max_chars` characters and `max_bytes` UTF-8 bytes, never half a character."""
    text = text[:max_chars]
    while len(text.encode("utf-8")) > max_bytes:
        text = text[:-1]
    return text


def _not_reserved(stem: str) -> str:
    base = stem.split(".")[0].strip().upper()
    return f"_{stem}" if base in _WINDOWS_RESERVED else stem


def safe_class_name(name: str) -> str:
    """A class name that is safe as one folder name on every OS, or InspectorError if nothing is left.

    Separators and forbidden characters become "_", leading/trailing dots and spaces go,
    Windows device names (CON, NUL, COM1...) get a "_" prefix, and the name is cut to 64 characters.
    """
    cleaned = _cut(_clean(name), MAX_CLASS_NAME).rstrip(". ")
    if not cleaned:
        raise InspectorError(f"'{name}' cannot be used as a class name: use letters or digits, e.g. 'scratch'.")
    return _not_reserved(cleaned)


def safe_file_name(name: str) -> str:
    """The last component of an uploaded file name, made safe; the extension is kept (lower case).

    Browsers may send "folder/photo.jpg" or "C:\\fakepath\\photo.jpg": only "photo.jpg" is kept.
    """
    base = re.split(r"[/\\]", str(name).replace("\x00", ""))[-1]
    stem, dot, ext = _clean(base).rpartition(".")
    if not dot:
        stem, ext = ext, ""
    ext = re.sub(r"[^A-Za-z0-9]", "", ext).lower()[:10]
    stem = _clean(stem) or "image"
    stem = _cut(stem, MAX_FILE_NAME - len(ext) - 1, MAX_NAME_BYTES - len(ext) - 1).rstrip(". ") or "image"
    return _not_reserved(stem) + (f".{ext}" if ext else "")


def sample_data_dir(source: str | os.PathLike | None = None, *, cache_dir: Path | None = None) -> Path:
    """The bundled sample data (with `train/` and `new_parts/`): `source`, INSPECTOR_SAMPLE_DATA,
    the repository's `sample_data/`, or else generated once into `cache_dir`."""
    for candidate in (source, os.environ.get("INSPECTOR_SAMPLE_DATA") or None, _REPO_SAMPLE_DATA):
        if candidate is not None and (Path(candidate) / "train").is_dir():
            return Path(candidate)
    if source is not None:
        raise InspectorError(f"No sample data in '{source}' (expected a 'train' folder).")
    if cache_dir is None:
        raise InspectorError("The bundled sample data is missing from this installation.")
    if not (cache_dir / "train").is_dir():
        from .sample_data import generate_sample_data

        staging = cache_dir.with_name(f"{cache_dir.name}.{uuid.uuid4().hex[:6]}.tmp")
        generate_sample_data(staging)
        shutil.rmtree(cache_dir, ignore_errors=True)
        os.replace(staging, cache_dir)
    return cache_dir


class Workspace:
    """The labeled images and runs under one folder. Constructing it touches nothing on disk."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_workspace_root()
        self.data_dir = self.root / "data"
        self.source_dir = self.root / "source"  # another line's labelled images, one folder per class
        self.unlabeled_dir = self.root / "unlabeled"  # this line's unlabelled images, one flat folder
        self.runs_dir = self.root / "runs"
        self.regions_path = self.root / "regions.json"  # beside data/: one drawing for the whole dataset

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    # -- paths -----------------------------------------------------------------------------
    def _class_dir(self, label: str, *, must_exist: bool = True, base: Path | None = None) -> Path:
        """The folder of class `label` under `base` (data/ by default, or source/)."""
        base = self.data_dir if base is None else base
        folder = base / safe_class_name(label)
        self._check_inside(folder, base)
        if must_exist and not folder.is_dir():
            raise InspectorError(f"There is no class '{label}'.")
        return folder

    def _image_path(self, label: str, filename: str) -> Path:
        path = self._class_dir(label) / safe_file_name(filename)
        self._check_inside(path)
        if not path.is_file():
            raise InspectorError(f"'{filename}' is not in class '{label}'.")
        return path

    def _check_inside(self, path: Path, base: Path | None = None) -> None:
        """`path` lies strictly inside `base` (data/ by default)."""
        root = (self.data_dir if base is None else base).resolve()
        resolved = path.resolve()
        if resolved == root or root not in resolved.parents:
            raise InspectorError(f"'{path.name}' is not a valid name.")

    def _ensure_data_dir(self, base: Path | None = None) -> None:
        base = self.data_dir if base is None else base
        with storage_errors(base):
            base.mkdir(parents=True, exist_ok=True)

    # -- reading ---------------------------------------------------------------------------
    def classes(self) -> dict[str, int]:
        """Class name -> number of image files, in natural order (empty classes included)."""
        return self._classes_in(self.data_dir)

    def _classes_in(self, base: Path) -> dict[str, int]:
        if not base.is_dir():
            return {}
        folders = [p for p in base.iterdir() if p.is_dir() and not is_ignored_name(p.name)]
        return {p.name: len(self._image_files(p)) for p in sorted(folders, key=lambda p: natural_key(p.name))}

    def images(self, label: str) -> list[Path]:
        """The image files of one class, in natural order."""
        return self._image_files(self._class_dir(label))

    @staticmethod
    def _image_files(folder: Path) -> list[Path]:
        try:
            files = [p for p in folder.iterdir() if p.is_file() and not is_ignored_name(p.name)
                     and p.suffix.lower() in IMAGE_EXTENSIONS]
        except OSError:
            return []
        return sorted(files, key=lambda p: natural_key(p.name))

    def n_images(self) -> int:
        return sum(self.classes().values())

    def dataset(self) -> LabeledDataset | None:
        """The verified dataset, or None while the workspace holds no image at all."""
        if self.n_images() == 0:
            return None
        return discover_dataset(self.data_dir)

    def fingerprint(self, part: str = "data") -> str:
        """A digest of the names, sizes and times of every class folder and file under data/ (or
        under source/ or unlabeled/, with `part`).

        Cheap (nothing is read, only listed) and different whenever a class is created, renamed or
        deleted, even an empty one, and whenever an image is added, removed or rewritten: the key
        for anything computed from the data (the app's cached data check, the shift meter).
        """
        digest = hashlib.sha1()
        for entry in self._listing(self._part(part)):
            digest.update(repr(entry).encode("utf-8", "surrogateescape"))
        return digest.hexdigest()

    def _part(self, part: str) -> Path:
        folders = {"data": self.data_dir, "source": self.source_dir, "unlabeled": self.unlabeled_dir}
        if part not in folders:
            raise InspectorError(f"Unknown part of the workspace {part!r}: use {', '.join(folders)}.")
        return folders[part]

    def _listing(self, base: Path) -> Iterator[tuple]:
        if not base.is_dir():
            return
        for current, dirs, files in os.walk(base):
            dirs[:] = sorted(d for d in dirs if not is_ignored_name(d))
            where = os.path.relpath(current, base)
            yield ("dir", where, _mtime_ns(current))
            for name in sorted(files):
                if is_ignored_name(name):
                    continue
                try:
                    info = os.stat(os.path.join(current, name))
                except OSError:
                    continue
                yield ("file", where, name, info.st_size, info.st_mtime_ns)

    def exact_copies(self) -> list[Path]:
        """Images that are exact copies (same bytes) of another image in the same class: all but the
        first of each group, in natural order (so `crack_00.jpg` stays and `crack_00_2.jpg` goes)."""
        extras: list[Path] = []
        for label in self.classes():
            index = _ClassIndex([])
            for path in self.images(label):
                try:
                    size, digest = path.stat().st_size, _file_hash(path)
                except OSError:
                    continue
                if index.find(size, digest) is not None:
                    extras.append(path)
                else:
                    index.add(path, size, digest)
        return extras

    def remove_exact_copies(self) -> int:
        """Delete every exact copy of another image in the same class, keeping one of each (see
        :meth:`exact_copies`); returns how many files were deleted."""
        removed = 0
        for path in self.exact_copies():
            self._check_inside(path)
            with storage_errors(path, "delete"):
                path.unlink(missing_ok=True)
            removed += 1
        return removed

    # -- adding images ---------------------------------------------------------------------
    def import_images(self, label: str, files: Iterable[tuple[str, bytes]], *,
                      duplicates: str = "skip") -> ImportReport:
        """Save uploaded `(file name, bytes)` into class `label` (created if needed).

        Each file is checked before it is written: one that is not a usable image is skipped with a
        reason; one whose bytes are already in the class (or earlier in this upload) is an exact copy,
        skipped when `duplicates` is "skip" (the default) and saved anyway when it is "keep". A name
        already taken gets a "_2"-style suffix.

        Raises:
            InspectorError: the upload is over the file-count or total-size limit (nothing is
                saved), `duplicates` is not "skip" or "keep", or the disk is full or read-only
                (the files saved so far stay).
        """
        return self._import_files(label, files, duplicates, self.data_dir)

    def _import_files(self, label: str | None, files: Iterable[tuple[str, bytes]], duplicates: str,
                      base: Path) -> ImportReport:
        """:meth:`import_images` into class `label` under `base`, or into `base` itself (label None)."""
        files = list(files)
        _check_duplicates_choice(duplicates)
        _check_upload(files)
        folder = self._make_class_dir(label, base)
        return self._import(((None if label is None else folder.name, name, data) for name, data in files),
                            duplicates, base)

    def add_images(self, label: str, files: Iterable[tuple[str, bytes]]) -> tuple[list[str], list[Skipped]]:
        """Save every usable image of `files` into class `label`, exact copies included (see
        :meth:`import_images`, which can skip them). Returns the saved file names and the skipped
        files with reasons."""
        report = self.import_images(label, files, duplicates="keep")
        return [name for names in report.saved.values() for name in names], report.skipped

    def _import(self, entries: Iterable[tuple[str | None, str, bytes]], duplicates: str,
                base: Path | None = None) -> ImportReport:
        """Write `(class, file name, bytes)` entries under `base` (data/ by default), checking each
        against its class first; a class of None is `base` itself (a flat folder: unlabeled/)."""
        base = self.data_dir if base is None else base
        report = ImportReport(copies_kept=duplicates == "keep")
        indexes: dict[Path, _ClassIndex] = {}
        for label, raw_name, data in entries:
            reason = _unusable(raw_name, data)
            if reason:
                report.skipped.append(Skipped(str(raw_name), reason))
                continue
            folder = self._make_class_dir(label, base)
            if folder not in indexes:
                indexes[folder] = _ClassIndex(self._image_files(folder))
            data = bytes(data)
            digest = content_hash(data)
            if indexes[folder].find(len(data), digest) is not None:
                report.copies[folder.name] = report.copies.get(folder.name, 0) + 1
                if duplicates == "skip":
                    continue
            path = self._write_new(folder, safe_file_name(raw_name), data, base)
            indexes[folder].add(path, len(data), digest)
            report.saved.setdefault(folder.name, []).append(path.name)
        return report

    def _make_class_dir(self, label: str | None, base: Path | None = None) -> Path:
        """The class folder under `base` (data/ by default), created if needed; `base` itself for None."""
        base = self.data_dir if base is None else base
        folder = base if label is None else self._class_dir(label, must_exist=False, base=base)
        self._ensure_data_dir(base)
        with storage_errors(folder):
            folder.mkdir(exist_ok=True)
        return folder

    def _write_new(self, folder: Path, name: str, data: bytes, base: Path | None = None) -> Path:
        with _lock:
            target = _free_name(folder, name)
            self._check_inside(target, base)
            atomic_write_bytes(target, data)
        return target

    def import_zip(self, source: str | os.PathLike | bytes, *, duplicates: str = "skip") -> ImportReport:
        """Import a .zip of class folders: valid images are copied into the matching classes.

        Exact copies of images already in their class (or earlier in the zip) are skipped, or kept
        when `duplicates` is "keep", as in :meth:`import_images`. A zip split into train/ and test/
        (MVTec, labelling tools) imports only train/; what was left out is in the report's skipped.
        """
        return self._import_zip(source, duplicates, self.data_dir)

    def _import_zip(self, source: str | os.PathLike | bytes, duplicates: str, base: Path, *,
                    flat: bool = False) -> ImportReport:
        """:meth:`import_zip` into `base`; `flat`: every image of the zip, in any layout, into `base`
        itself (folder names are not read as classes: this line's unlabelled images)."""
        _check_duplicates_choice(duplicates)
        with tempfile.TemporaryDirectory(prefix="inspector-upload-") as tmp:
            zip_path = _zip_file(source, Path(tmp))
            root, skipped = extract_zip(zip_path, Path(tmp) / "extracted", max_files=MAX_FILES_PER_UPLOAD,
                                        max_total_bytes=MAX_UPLOAD_TOTAL_BYTES)
            dataset = discover_images(root) if flat else discover_dataset(root)
            skipped = list(skipped) + list(dataset.skipped)
            if dataset.layout is not None:  # a split zip (MVTec, train/ + val/): only train/ is imported
                skipped += [Skipped(display_path(folder, dataset.root) + "/", reason)
                            for folder, reason in dataset.layout.left_out("train")]
            entries = ((None if flat else sample.label, sample.path.name, sample.path.read_bytes())
                       for sample in dataset.samples)  # one file in memory at a time
            report = self._import(entries, duplicates, base)
        report.skipped[:0] = skipped
        return report

    def add_zip(self, source: str | os.PathLike | bytes, *,
                duplicates: str = "keep") -> tuple[dict[str, int], list[Skipped]]:
        """:meth:`import_zip`, returning images saved per class and the skipped entries with reasons
        (exact copies that were skipped are among them)."""
        report = self.import_zip(source, duplicates=duplicates)
        copies = [Skipped(f"{label}/ ({n} files)", "exact copies of images already in the class")
                  for label, n in report.copies.items() if not report.copies_kept]
        return report.counts(), report.skipped + copies

    def sample_images(self, part: str = "train", source: str | os.PathLike | None = None) -> dict[str, int]:
        """How many images each class of the bundled sample set `part` holds (what loading it offers)."""
        return {folder.name: len(self._image_files(folder)) for folder in self._sample_classes(part, source)}

    def _sample_classes(self, part: str, source: str | os.PathLike | None) -> list[Path]:
        if part not in ("train", "good_parts"):
            raise InspectorError(f"Unknown sample set {part!r}: use train or good_parts.")
        train_dir = sample_data_dir(source, cache_dir=self.root / ".sample_data") / part
        if not train_dir.is_dir():
            raise InspectorError(f"This installation's sample data has no '{part}' set; regenerate it with "
                                 "'inspector sample-data'.")
        return sorted((p for p in train_dir.iterdir() if p.is_dir() and not is_ignored_name(p.name)),
                      key=lambda p: natural_key(p.name))

    def import_sample_data(self, source: str | os.PathLike | None = None, part: str = "train") -> ImportReport:
        """Copy the bundled sample images into the workspace; images already there (the same bytes
        in the same class) are left alone, whatever their name, so loading twice adds nothing and
        the good parts (`part="good_parts"`, for anomaly detection) add to the labelled sample's
        'ok' class although their names are the same.

        part: "train" (labelled good and defect parts) or "good_parts" (good parts only).
        """
        report = ImportReport()
        for class_dir in self._sample_classes(part, source):
            files = [(p.name, p.read_bytes()) for p in self._image_files(class_dir)]
            report.merge(self.import_images(class_dir.name, files, duplicates="skip"))
        return report

    def load_sample_data(self, source: str | os.PathLike | None = None, part: str = "train") -> int:
        """:meth:`import_sample_data`; returns how many images were added."""
        return self.import_sample_data(source, part).n_saved

    def new_parts_dir(self) -> Path:
        """Sample images of new parts (not in the training data) to try a model on."""
        return sample_data_dir(cache_dir=self.root / ".sample_data") / "new_parts"

    # -- another line's images (source) and this line's unlabelled images ------------------------
    # Domain adaptation (TrainConfig.source / .unlabeled): the same checks as data/ (decoded before
    # saved, exact copies skipped, safe names, atomic writes), in folders of their own.
    def source_classes(self) -> dict[str, int]:
        """The other line's classes -> number of images, in natural order."""
        return self._classes_in(self.source_dir)

    def source_images(self, label: str) -> list[Path]:
        """The image files of one of the other line's classes, in natural order."""
        return self._image_files(self._class_dir(label, base=self.source_dir))

    def n_source(self) -> int:
        return sum(self.source_classes().values())

    def unlabeled_images(self) -> list[Path]:
        """This line's unlabelled image files, in natural order."""
        return self._image_files(self.unlabeled_dir) if self.unlabeled_dir.is_dir() else []

    def n_unlabeled(self) -> int:
        return len(self.unlabeled_images())

    def import_source_images(self, label: str, files: Iterable[tuple[str, bytes]], *,
                             duplicates: str = "skip") -> ImportReport:
        """Save uploaded images of another line into its class `label` (see :meth:`import_images`)."""
        return self._import_files(label, files, duplicates, self.source_dir)

    def import_source_zip(self, source: str | os.PathLike | bytes, *, duplicates: str = "skip") -> ImportReport:
        """Import a .zip of another line's class folders (see :meth:`import_zip`)."""
        return self._import_zip(source, duplicates, self.source_dir)

    def import_unlabeled_images(self, files: Iterable[tuple[str, bytes]], *,
                                duplicates: str = "skip") -> ImportReport:
        """Save uploaded unlabelled images of this line (any names; exact copies skipped by default)."""
        return self._import_files(None, files, duplicates, self.unlabeled_dir)

    def import_unlabeled_zip(self, source: str | os.PathLike | bytes, *, duplicates: str = "skip") -> ImportReport:
        """Import every image of a .zip, in any layout, as this line's unlabelled images: folder names
        (dates, shifts, cameras) are not read as classes, and images of the same name in different
        folders are all kept (the later ones get a "_2"-style suffix)."""
        return self._import_zip(source, duplicates, self.unlabeled_dir, flat=True)

    def delete_source_class(self, name: str) -> None:
        self._remove_tree(self._class_dir(name, base=self.source_dir))

    def clear_source(self) -> int:
        """Delete every image of the other line; returns how many there were."""
        return self._clear(self.source_dir, self.n_source())

    def clear_unlabeled(self) -> int:
        """Delete every unlabelled image of this line; returns how many there were."""
        return self._clear(self.unlabeled_dir, self.n_unlabeled())

    def _clear(self, folder: Path, n: int) -> int:
        if folder.is_dir():
            self._remove_tree(folder)
        return n

    def source_path(self) -> str | None:
        """The other line's folder for TrainConfig.source, or None while it holds no image."""
        return str(self.source_dir) if self.n_source() else None

    def unlabeled_path(self) -> str | None:
        """This line's unlabelled folder for TrainConfig.unlabeled, or None while it holds no image."""
        return str(self.unlabeled_dir) if self.n_unlabeled() else None

    def source_dataset(self) -> LabeledDataset | None:
        """The other line's verified dataset, or None while it holds no image."""
        return discover_dataset(self.source_dir) if self.n_source() else None

    def unlabeled_dataset(self) -> LabeledDataset | None:
        """This line's verified unlabelled images (data.discover_images), or None while there are none."""
        return discover_images(self.unlabeled_dir) if self.n_unlabeled() else None

    # -- regions: where to look (a region of interest, regions to ignore) --------------------------
    def regions(self) -> Regions:
        """The dataset's regions (regions.json); no regions when there is no file.
        Raises InspectorError when the file is not readable."""
        if not self.regions_path.is_file():
            return Regions()
        return Regions.read(self.regions_path)

    def save_regions(self, regions: Regions) -> Regions:
        """Store the dataset's regions (atomically); empty regions remove the file. Returns them."""
        if regions.empty:
            self.clear_regions()
            return regions
        with storage_errors(self.regions_path):
            self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.regions_path, regions.to_dict())
        return regions

    def clear_regions(self) -> None:
        with storage_errors(self.regions_path):
            self.regions_path.unlink(missing_ok=True)

    def save_region_mask(self, kind: str, data: bytes | None) -> Regions:
        """Set (image bytes: white = the region) or drop (None) the region-of-interest mask (`kind`
        "roi") or the ignore mask ("ignore"), keeping the drawn shapes. Returns the stored regions.
        Raises InspectorError for an unreadable or all-dark image."""
        if kind not in ("roi", "ignore"):
            raise ValueError(f"kind must be 'roi' or 'ignore', not {kind!r}")
        mask = None
        if data is not None:
            with tempfile.TemporaryDirectory() as scratch:
                path = Path(scratch) / f"{kind}_mask"
                path.write_bytes(data)
                mask = read_mask_image(path)
        current = self.regions()
        masks = {"roi_mask": current.roi_mask, "ignore_mask": current.ignore_mask, f"{kind}_mask": mask}
        return self.save_regions(Regions(current.roi, current.ignore, **masks))

    # -- classes ---------------------------------------------------------------------------
    def create_class(self, name: str) -> str:
        """Create an empty class; returns its (sanitised) name."""
        folder = self._class_dir(name, must_exist=False)
        if folder.exists():
            raise InspectorError(f"A class named '{folder.name}' already exists.")
        self._ensure_data_dir()
        with storage_errors(folder):
            folder.mkdir()
        return folder.name

    def rename_class(self, old: str, new: str) -> str:
        source = self._class_dir(old)
        target = self._class_dir(new, must_exist=False)
        if target == source:
            return target.name
        if target.exists() and not _same_folder(source, target):
            raise InspectorError(f"A class named '{target.name}' already exists; merge the classes instead.")
        with storage_errors(source, "rename"):
            os.replace(source, target)
        return target.name

    def merge_classes(self, sources: Iterable[str], target: str) -> int:
        """Move every image of `sources` into `target` (created if needed); returns images moved."""
        target_dir = self._make_class_dir(target)
        moved = 0
        for label in sources:
            source_dir = self._class_dir(label)
            if source_dir == target_dir:
                continue
            for path in self._image_files(source_dir):
                self._move(path, target_dir)
                moved += 1
            self._remove_tree(source_dir)
        return moved

    def delete_class(self, name: str) -> None:
        self._remove_tree(self._class_dir(name))

    def _remove_tree(self, folder: Path) -> None:
        # Rename first (hidden name): a half-deleted class never shows up as a class.
        trash = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:6]}.deleting")
        with storage_errors(folder, "delete"):
            os.replace(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)

    # -- images ----------------------------------------------------------------------------
    def move_image(self, label: str, filename: str, new_label: str) -> str:
        """Relabel one image; returns its file name in the new class (suffixed if taken)."""
        path = self._image_path(label, filename)
        if self._class_dir(new_label, must_exist=False) == path.parent:
            return path.name
        return self._move(path, self._make_class_dir(new_label)).name

    def _move(self, path: Path, folder: Path) -> Path:
        with _lock:
            target = _free_name(folder, path.name)
            self._check_inside(target)
            with storage_errors(path, "move"):
                os.replace(path, target)
        return target

    def delete_image(self, label: str, filename: str) -> None:
        path = self._image_path(label, filename)
        with storage_errors(path, "delete"):
            path.unlink()

    def read_image(self, label: str, filename: str) -> bytes:
        return self._image_path(label, filename).read_bytes()


def _check_upload(files: list[tuple[str, bytes]]) -> None:
    """Refuse an upload over the file-count or total-size limit before anything is written."""
    if len(files) > MAX_FILES_PER_UPLOAD:
        raise InspectorError(f"{len(files)} files in one upload; the limit is {MAX_FILES_PER_UPLOAD}. "
                             "Add them in smaller parts.")
    total = sum(len(data) for _, data in files)
    if total > MAX_UPLOAD_TOTAL_BYTES:
        raise InspectorError(f"The upload holds {_mb(total)}; the limit is {_mb(MAX_UPLOAD_TOTAL_BYTES)}. "
                             "Add the images in smaller parts.")


def _check_duplicates_choice(duplicates: str) -> None:
    if duplicates not in DUPLICATE_CHOICES:
        raise InspectorError(f"Unknown choice for exact copies {duplicates!r}: use skip or keep.")


def _file_hash(path: Path) -> str:
    return content_hash(path.read_bytes())


def _mtime_ns(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def _unusable(raw_name: str, data: bytes) -> str | None:
    """Why an uploaded file cannot be saved as an image, or None when it can."""
    suffix = Path(safe_file_name(raw_name)).suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        return f"not an image file ({suffix or 'no extension'})"
    if len(data) > MAX_UPLOAD_BYTES:
        return f"file too large ({_mb(len(data))}; the limit is {_mb(MAX_UPLOAD_BYTES)})"
    try:
        load_image(data)  # also refuses more pixels than MAX_IMAGE_PIXELS
    except ImageLoadError as exc:
        return str(exc)
    return None


def _zip_file(source: str | os.PathLike | bytes, scratch: Path) -> Path:
    """The uploaded zip as a file (bytes are written into `scratch`), within the size limit."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        size = len(source)
        path = scratch / "upload.zip"
    else:
        path = Path(source)
        size = path.stat().st_size if path.is_file() else 0
    if size > MAX_UPLOAD_BYTES:
        raise InspectorError(f"The zip is {_mb(size)}; the limit is {_mb(MAX_UPLOAD_BYTES)}.")
    if isinstance(source, (bytes, bytearray, memoryview)):
        with storage_errors(path):
            path.write_bytes(bytes(source))
    return path


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"


def _free_name(folder: Path, name: str) -> Path:
    """`name` in `folder`, or "stem_2.ext", "stem_3.ext"... if taken (case-insensitively)."""
    taken = {p.name.lower() for p in folder.iterdir()} if folder.is_dir() else set()
    stem, suffix = Path(name).stem, Path(name).suffix
    candidate, n = name, 1
    while candidate.lower() in taken:
        n += 1
        candidate = f"{stem}_{n}{suffix}"
    return folder / candidate


def _same_folder(a: Path, b: Path) -> bool:
    """True when a and b are one folder (a case-only rename on a case-insensitive disk)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def image_bytes_to_thumbnail(data: bytes, size: int = 160) -> bytes:
    """A small JPEG of an image (for thumbnail grids)."""
    image = load_image(data)
    image.thumbnail((size, size))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()
