"""Dataset discovery: a folder, a zip or uploaded (path, label) pairs -> verified samples.

Every file ends up either as a :class:`Sample` (decoded once to prove it is usable) or as a
:class:`Skipped` record with a plain reason. Hidden files and OS litter are ignored silently.
"""
from __future__ import annotations

import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from inspector.data.archive import extract_zip
from inspector.data.images import content_hash, is_image_path, load_image, read_bytes
from inspector.data.layouts import (
    SplitLayout,
    find_masks,
    is_mask_folder,
    is_split_name,
    recognise_layout,
)
from inspector.data.types import Skipped, display_path, is_ignored_name
from inspector.errors import ImageLoadError, InspectorError
from inspector.runtime.frames import frame_problem
from inspector.runtime.images import broken_link_reason, dataset_bit_depth, image_bit_depth, walk_files

__all__ = ["UNLABELED", "LabeledDataset", "Sample", "Skipped", "discover_dataset", "discover_images", "natural_key"]

_LAYOUT_HINT = "Put the images into one sub-folder per class, e.g. data/ok/*.png and data/scratch/*.png"
# Decoding is mostly C code that releases the GIL, so threads scale with cores.
_WORKERS = min(8, (os.cpu_count() or 1) + 1)


@dataclass(frozen=True)
class Sample:
    """One verified image: ``width``/``height`` are after EXIF orientation; ``mask`` is its defect mask
    (white where the defect is) when the dataset has one (an MVTec-style ``ground_truth/``)."""

    path: Path
    label: str
    sha256: str
    width: int
    height: int
    mask: Path | None = None
    bit_depth: int | None = None  # a high-bit-depth grey file's bits in use (runtime.images.image_bit_depth)
    frame: str | None = None  # why the frame has nothing to inspect (blank, saturated, flat), runtime.frames


@dataclass
class LabeledDataset:
    """Verified samples plus everything that was left out.

    ``classes`` holds only classes with at least one usable image; ``empty_classes`` names
    class folders (or labels) that had none. ``layout`` is the split layout the folder was read
    from (train/ + test/ ...; None for plain class folders) and ``notes`` says, in words, what was
    read from it.
    """

    samples: list[Sample]
    classes: list[str]
    skipped: list[Skipped]
    root: Path | None
    empty_classes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    layout: SplitLayout | None = None

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        """Class index of every sample (indices into ``classes``)."""
        index = {name: i for i, name in enumerate(self.classes)}
        return [index[s.label] for s in self.samples]

    @property
    def paths(self) -> list[Path]:
        return [s.path for s in self.samples]

    @property
    def bit_depth(self) -> int | None:
        """The camera bit depth of the dataset's 16-bit images (one mapping for all of them, see
        runtime.images.load_image), None when every image is 8-bit."""
        return dataset_bit_depth(s.bit_depth for s in self.samples)

    def counts(self) -> dict[str, int]:
        """Images per class, in class order (classes with 0 images included as 0)."""
        counter = Counter(s.label for s in self.samples)
        return {name: counter.get(name, 0) for name in self.classes}

    def subset(self, indices: Iterable[int]) -> LabeledDataset:
        """Samples at ``indices``; classes, skipped and empty classes are kept unchanged
        so that label indices mean the same in every subset."""
        return LabeledDataset(
            samples=[self.samples[int(i)] for i in indices],
            classes=list(self.classes),
            skipped=list(self.skipped),
            root=self.root,
            empty_classes=list(self.empty_classes),
            notes=list(self.notes),
            layout=self.layout,
        )


def natural_key(text: str) -> tuple:
    """Sort key that orders 'img2' before 'img10' (case-sensitive)."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


def discover_dataset(
    source: str | os.PathLike | Iterable[tuple[str | os.PathLike, str]],
    *,
    extract_dir: Path | None = None,
    max_pixels: int | None = None,  # None: the one limit (INSPECTOR_MAX_MEGAPIXELS / --max-megapixels)
    split: str = "train",
) -> LabeledDataset:
    """Find and verify the labelled images in a folder, a ``.zip`` or ``(path, label)`` pairs.

    A folder (or zip) holds one sub-folder per class; images in deeper folders count for
    their first-level folder. One wrapping folder around the class folders is looked
    through. A zip is extracted into ``extract_dir`` (a new temporary folder if None; it
    must outlive the dataset because samples point into it).

    A folder split into ``train/`` and ``test/`` (or ``val/``) folders of class folders, as MVTec AD
    and most labelling tools export, is read by ``split``: "train" (training, the default) reads
    ``train/``, "test" (evaluation) reads ``test/``, else ``val/``; ``notes`` says so. Split names
    are never classes and mask folders (``ground_truth/``, ``masks/``) never photos: with
    ``split="test"`` each test image gets its mask from ``ground_truth/`` where there is one.

    Raises:
        InspectorError: the path is missing, is neither folder nor zip, has images but no
            class folders, mixes split folders with class folders, lacks the split asked
            for, or no usable image was found.
    """
    if isinstance(source, (str, os.PathLike)):
        return _discover_path(Path(source), extract_dir, max_pixels, split)
    return _discover_pairs(source, max_pixels)


def _discover_path(path: Path, extract_dir: Path | None, max_pixels: int | None, split: str) -> LabeledDataset:
    if str(path) in ("", "."):  # Path("") is the working folder: almost surely a blank field
        raise InspectorError("No dataset folder or zip file was given.")
    if not path.exists():
        raise InspectorError(f"'{path}' does not exist.")
    if path.is_dir():
        return _discover_folder(path, [], max_pixels, split)
    if path.suffix.lower() != ".zip":
        raise InspectorError(f"'{path.name}' is a file, not a folder or a .zip archive. {_LAYOUT_HINT}.")
    dest = extract_dir if extract_dir is not None else Path(tempfile.mkdtemp(prefix="inspector-zip-"))
    root, skipped = extract_zip(path, dest)
    return _discover_folder(root, skipped, max_pixels, split)


def _discover_folder(root: Path, skipped: list[Skipped], max_pixels: int | None, split: str) -> LabeledDataset:
    """Class folders under ``root`` (after looking through wrapping folders), or under the folder of a
    split layout that ``split`` reads; paths are shown relative to the dataset folder."""
    top = root
    root = _class_root(top)
    dirs, files = _visible_children(root)
    layout = recognise_layout(root, dirs)
    class_root = layout.folder(split) if layout is not None else root
    if is_mask_folder(class_root.name):
        raise InspectorError(f"'{class_root.name}' holds defect masks (ground truth), not photos: pass the folder of "
                             "photos (for an MVTec-style dataset, the folder that holds train/, test/ and "
                             f"{class_root.name}/).")
    skipped = list(skipped)
    for f in _stray_files(top, root):  # above the class root: shown relative to what was given
        skipped.append(Skipped(display_path(f, top), broken_link_reason(f) or _non_image_reason(f)))
    if layout is not None:
        dirs, split_files = _visible_children(class_root)
        files = [*files, *split_files]
    if not dirs:
        raise InspectorError(f"No class folders found in '{class_root.name}'. {_LAYOUT_HINT}.")
    for f in files:
        reason = broken_link_reason(f) or ("not in a class folder" if is_image_path(f) else _non_image_reason(f))
        skipped.append(Skipped(display_path(f, root), reason))
    candidates: list[tuple[Path, str]] = []
    masks: set[Path] = set()
    for class_dir in dirs:
        if is_mask_folder(class_dir.name):
            masks.add(class_dir)
            continue
        for path in _walk_files(class_dir, root, skipped):
            mask_dir = _mask_folder_of(path, class_dir)
            if mask_dir is not None:
                masks.add(mask_dir)
            elif is_image_path(path):
                candidates.append((path, class_dir.name))
            else:
                skipped.append(Skipped(display_path(path, root), _non_image_reason(path)))
    skipped += [Skipped(display_path(m, root) + "/", _MASKS_REASON) for m in sorted(masks)]
    class_names = [d.name for d in dirs if d not in masks]
    dataset = _verify(candidates, class_names, skipped, root, max_pixels)
    if layout is not None:
        dataset.layout = layout
        dataset.notes.append(layout.note(split, class_names))
    return _with_masks(dataset, class_root, _mask_root(layout, class_root) if split == "test" else None)


_MASKS_REASON = "defect masks (ground truth), not photos: left out"

UNLABELED = "(unlabelled)"  # the one pseudo-class of `discover_images`' samples


def discover_images(source: str | os.PathLike, *, extract_dir: Path | None = None,
                    max_pixels: int | None = None) -> LabeledDataset:
    """Every usable image in a folder or ``.zip``, in any layout: folder names are never read as labels
    (unlabelled images from a line, which plants keep by date, shift or camera). The samples' label is
    the pseudo-class ``UNLABELED``; mask folders (ground_truth/, masks/) are left out like everywhere.

    Raises:
        InspectorError: the path is missing, is a file that is not a zip, or holds no usable image.
    """
    path = Path(source)
    if str(path) in ("", "."):
        raise InspectorError("No folder or zip file of unlabelled images was given.")
    if not path.exists():
        raise InspectorError(f"'{path}' does not exist.")
    skipped: list[Skipped] = []
    if path.is_dir():
        root = path
    elif path.suffix.lower() == ".zip":
        dest = extract_dir if extract_dir is not None else Path(tempfile.mkdtemp(prefix="inspector-zip-"))
        root, skipped = extract_zip(path, dest)
    else:
        raise InspectorError(f"'{path.name}' is a file, not a folder or a .zip archive of images.")
    candidates: list[tuple[Path, str]] = []
    for file in _walk_files(root, root, skipped):
        if any(is_mask_folder(part) for part in file.relative_to(root).parts[:-1]):
            continue
        if is_image_path(file):
            candidates.append((file, UNLABELED))
        else:
            skipped.append(Skipped(display_path(file, root), _non_image_reason(file)))
    return _verify(candidates, [UNLABELED], skipped, root, max_pixels)


def _mask_folder_of(path: Path, class_dir: Path) -> Path | None:
    """The mask folder (ground_truth/, masks/ ...) inside a class folder that holds ``path``, if any."""
    folder = class_dir
    for part in path.relative_to(class_dir).parts[:-1]:
        folder = folder / part
        if is_mask_folder(part):
            return folder
    return None


def _mask_root(layout: SplitLayout | None, class_root: Path) -> Path | None:
    """Where the masks of the test images are: the layout's mask folder, or, for a test folder given
    on its own (``bottle/test``), a mask folder beside it (``bottle/ground_truth``)."""
    if layout is not None:
        return layout.masks
    if not is_split_name(class_root.name):
        return None
    return next((d for d in _visible_children(class_root.parent)[0] if is_mask_folder(d.name)), None)


def _with_masks(dataset: LabeledDataset, class_root: Path, mask_root: Path | None) -> LabeledDataset:
    """The samples with their defect masks from ``mask_root`` attached (unchanged without one)."""
    if mask_root is None:
        return dataset
    found = find_masks([s.path for s in dataset.samples], class_root, mask_root)
    dataset.samples = [replace(s, mask=found.get(s.path)) for s in dataset.samples]
    if found and dataset.layout is None:
        dataset.notes.append(f"defect masks for {len(found)} test images from {mask_root.name}/ beside "
                             f"{class_root.name}/ score the anomaly maps (pixel AUROC).")
    return dataset


def _discover_pairs(pairs: Iterable[tuple[str | os.PathLike, str]], max_pixels: int | None) -> LabeledDataset:
    """Uploaded files with their labels (the web app's path)."""
    candidates: list[tuple[Path, str]] = []
    skipped: list[Skipped] = []
    labels: list[str] = []
    for raw_path, raw_label in pairs:
        path, label = Path(raw_path), str(raw_label).strip()
        if not label:
            skipped.append(Skipped(str(path), "no label given"))
            continue
        labels.append(label)
        if is_ignored_name(path.name):
            continue
        if is_image_path(path):
            candidates.append((path, label))
        else:
            skipped.append(Skipped(str(path), _non_image_reason(path)))
    return _verify(candidates, sorted(set(labels), key=natural_key), skipped, None, max_pixels)


def _class_root(root: Path) -> Path:
    """Descend through single folders that wrap the class folders (``dataset/ok/...``)."""
    seen = {_identity(root)}
    while True:
        dirs, files = _visible_children(root)
        if len(dirs) != 1 or any(is_image_path(f) for f in files):
            return root
        if is_split_name(dirs[0].name) or is_mask_folder(dirs[0].name):
            return root  # a split (train/) or masks are never a wrapper: the layout decides what they are
        inner_dirs, inner_files = _visible_children(dirs[0])
        if not inner_dirs or any(is_image_path(f) for f in inner_files) or _identity(dirs[0]) in seen:
            return root  # dirs[0] is itself a class folder (or a link back to a wrapping folder)
        seen.add(_identity(dirs[0]))
        root = dirs[0]


def _identity(folder: Path) -> tuple[int, int]:
    info = folder.stat()
    return info.st_dev, info.st_ino


def _stray_files(top: Path, root: Path) -> list[Path]:
    """Files in the wrapping folders between ``top`` and the class root (none are images)."""
    stray: list[Path] = []
    while root != top:
        root = root.parent
        stray.extend(_visible_children(root)[1])
    return stray


def _visible_children(folder: Path) -> tuple[list[Path], list[Path]]:
    """Sorted (folders, files) of ``folder`` without hidden entries and OS litter."""
    try:
        names = [p for p in folder.iterdir() if not is_ignored_name(p.name)]
    except OSError as exc:
        raise InspectorError(f"Cannot open the folder '{folder}' ({exc.strerror or exc}).") from None
    children = sorted(names, key=lambda p: natural_key(p.name))
    return [p for p in children if p.is_dir()], [p for p in children if not p.is_dir()]


def _walk_files(folder: Path, root: Path, skipped: list[Skipped]) -> list[Path]:
    """All visible files below ``folder``, in natural order, symbolic links followed (each folder
    walked once, each file used once); broken links and unreadable sub-folders are skipped with
    their reason."""
    found, left_out = walk_files(folder)
    skipped.extend(Skipped(display_path(path, root), reason) for path, reason in left_out)
    return sorted(found, key=lambda p: natural_key(str(p)))


def _non_image_reason(path: Path) -> str:
    return f"not an image file ({path.suffix.lower() or 'no extension'})"


def _verify(
    candidates: Sequence[tuple[Path, str]],
    class_names: Sequence[str],
    skipped: list[Skipped],
    root: Path | None,
    max_pixels: int | None,
) -> LabeledDataset:
    """Decode every candidate once (in threads); build the dataset from the good ones."""
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        results = list(pool.map(lambda c: _inspect(c[0], c[1], max_pixels), candidates))
    samples: list[Sample] = []
    for (path, _), result in zip(candidates, results):
        if isinstance(result, Sample):
            samples.append(result)
        else:
            skipped.append(Skipped(display_path(path, root), result))
    if not samples:
        raise InspectorError(_nothing_usable_message(root, skipped))
    samples.sort(key=lambda s: (natural_key(s.label), natural_key(str(s.path))))
    present = {s.label for s in samples}
    return LabeledDataset(
        samples=samples,
        classes=sorted(present, key=natural_key),
        skipped=skipped,
        root=root,
        empty_classes=[c for c in class_names if c not in present],
    )


def _inspect(path: Path, label: str, max_pixels: int | None) -> Sample | str:
    """A verified Sample, or the reason the file cannot be used."""
    try:
        data = read_bytes(path)
        image = load_image(data, max_pixels=max_pixels)
        depth = image_bit_depth(data, max_pixels=max_pixels)  # header only for 8-bit files
    except ImageLoadError as exc:
        return str(exc)
    # The blank-frame check sees the 8-bit image as training will (16-bit: the dataset's one mapping,
    # known only later; this image's own guess is close enough to tell a black frame).
    return Sample(path=path, label=label, sha256=content_hash(data), width=image.width, height=image.height,
                  bit_depth=depth, frame=frame_problem(image))


def _nothing_usable_message(root: Path | None, skipped: list[Skipped]) -> str:
    where = f" in '{root.name}'" if root is not None else ""
    if not skipped:
        return f"No images found{where}. {_LAYOUT_HINT}."
    reasons = Counter(s.reason for s in skipped).most_common(3)
    summary = "; ".join(f"{n} x {reason}" for reason, n in reasons)
    return f"No usable images found{where}: {len(skipped)} files were skipped ({summary})."
