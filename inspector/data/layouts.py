"""Well-known dataset layouts: a folder split into train/ and test/ (or val/), with defect masks.

Public defect datasets and most exports from labelling tools come split: MVTec AD and its kin
(`train/good`, `test/good`, `test/<defect>`, `ground_truth/<defect>/<name>_mask.png`), or a
classifier's `train/<class>` + `val/<class>`. Split names are never classes and masks are never
photos: training reads the train split, evaluation the test split (else the validation split),
and the masks only score anomaly maps. Pure functions on paths; discovery does the reading.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from inspector.errors import InspectorError
from inspector.runtime.images import IMAGE_EXTENSIONS, is_ignored_name, is_mask_folder

__all__ = ["SPLITS", "SplitLayout", "find_masks", "is_mask_folder", "is_split_name", "recognise_layout"]

SPLITS = ("train", "test")  # what a command may ask for: training reads train/, evaluation test/ (else val/)
_ROLES = {"train": "train", "training": "train", "test": "test", "testing": "test",
          "val": "val", "valid": "val", "validation": "val"}
_MASK_SUFFIXES = ("_mask", "-mask", "_gt")


def is_split_name(name: str) -> bool:
    """A folder named like a dataset split (train, test, val, ...; any case)."""
    return name.strip().lower() in _ROLES


@dataclass(frozen=True)
class SplitLayout:
    """A dataset folder split into train/test/val folders (each holding class folders), perhaps with masks."""

    root: Path
    train: Path | None
    test: Path | None
    val: Path | None
    masks: Path | None

    def folders(self) -> list[Path]:
        return [p for p in (self.train, self.test, self.val, self.masks) if p is not None]

    def folder(self, split: str) -> Path:
        """The folder of class folders that `split` reads: train/, or test/ (else val/) for evaluation."""
        _check_split(split)
        chosen = self.train if split == "train" else self.test or self.val
        if chosen is not None:
            return chosen
        found = ", ".join(f"{p.name}/" for p in self.folders())
        if split == "train":
            raise InspectorError(f"'{self.root.name}' is split into {found} but has no train/ folder to train on: "
                                 "pass a folder with one sub-folder per class of training images.")
        raise InspectorError(f"'{self.root.name}' is split into {found} but has no test/ or val/ folder to evaluate "
                             f"on: pass a folder with one sub-folder per class of test images.")

    def note(self, split: str, classes: Sequence[str]) -> str:
        """One sentence: which folder is read and what the others are for."""
        read = self.folder(split)
        names = ", ".join(classes) or "none"
        parts = " and ".join(f"{p.name}/" for p in (self.train, self.test or self.val) if p is not None)
        masks = f" (defect masks in {self.masks.name}/)" if self.masks is not None else ""
        text = f"'{self.root.name}' is split into {parts}{masks}: "
        if split == "train":
            text += f"training reads {read.name}/ only (class folders: {names})"
            held_out = self.test or self.val
            if held_out is not None:
                text += (f"; {held_out.name}/ is never trained on: pass the same folder to `inspector evaluate RUN "
                         f"DATA`, which reads {held_out.name}/")
        else:
            text += f"evaluating on {read.name}/ (class folders: {names})"
            if self.masks is not None:
                text += f"; the masks in {self.masks.name}/ score the anomaly maps (pixel AUROC)"
        return text + "; split names are never classes."

    def left_out(self, split: str) -> list[tuple[Path, str]]:
        """The folders `split` does not read, each with the reason (for an import that lists what it skipped)."""
        read = self.folder(split)
        out = []
        for folder in self.folders():
            if folder == read:
                continue
            if folder == self.masks:
                out.append((folder, "defect masks (ground truth), not photos: not imported"))
            else:
                reason = (f"the {folder.name} split, kept apart from training: not imported "
                          f"(training data comes from {read.name}/)")
                out.append((folder, reason))
        return out


def recognise_layout(root: Path, dirs: Sequence[Path]) -> SplitLayout | None:
    """The split layout of `root` from its visible sub-folders `dirs`, or None for plain class folders.

    Raises:
        InspectorError: split folders beside other folders (a split name would be learnt as a class).
    """
    roles: dict[str, Path] = {}
    masks: Path | None = None
    others: list[Path] = []
    for folder in dirs:
        role = _ROLES.get(folder.name.strip().lower())
        if role is not None:
            roles.setdefault(role, folder)
        elif is_mask_folder(folder.name):
            masks = masks or folder
        else:
            others.append(folder)
    if not roles:
        return None
    if others:
        splits = ", ".join(f"{p.name}/" for p in roles.values())
        raise InspectorError(
            f"'{root.name}' mixes dataset splits ({splits}) with other folders ({', '.join(p.name for p in others)}): "
            f"a split is not a class. Pass the folder of class folders itself (e.g. '{next(iter(roles.values()))}'), "
            "or put every split's class folders inside its split folder.")
    return SplitLayout(root, roles.get("train"), roles.get("test"), roles.get("val"), masks)


def find_masks(images: Sequence[Path], image_root: Path, mask_root: Path) -> dict[Path, Path]:
    """The mask of each image that has one: the same sub-folder under `mask_root`, named like the image
    or with `_mask` after its stem (MVTec: `test/crack/000.png` -> `ground_truth/crack/000_mask.png`)."""
    index: dict[tuple[str, str], Path] = {}
    for path in sorted(mask_root.rglob("*")):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or is_ignored_name(path.name) or not path.is_file():
            continue
        stem = path.stem
        for suffix in _MASK_SUFFIXES:
            if stem.lower().endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        index.setdefault((path.parent.relative_to(mask_root).as_posix(), stem), path)
    found = {}
    for image in images:
        try:
            folder = image.parent.relative_to(image_root).as_posix()
        except ValueError:
            continue
        mask = index.get((folder, image.stem))
        if mask is not None:
            found[image] = mask
    return found


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise InspectorError(f"Unknown dataset split {split!r}: use {' or '.join(SPLITS)}.")
