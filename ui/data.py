"""Cached reads of the workspace for the pages (keyed by what is on disk, so never stale)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from inspector import LabeledDataset, ValidationReport, validate_dataset
from inspector.data import load_image, to_rgb_array
from inspector.workspace import ImportReport, Workspace, image_bytes_to_thumbnail
from ui.words import count, listing


@st.cache_data(show_spinner="Checking the images...", max_entries=4)
def _checked(data_dir: str, fingerprint: str) -> tuple[LabeledDataset | None, ValidationReport | None]:
    ws = Workspace(Path(data_dir).parent)
    dataset = ws.dataset()
    return dataset, (validate_dataset(dataset) if dataset is not None else None)


def checked_dataset(ws: Workspace) -> tuple[LabeledDataset | None, ValidationReport | None]:
    """The workspace dataset and its validation report (None, None when there are no images).

    Cached by the workspace's fingerprint (every class folder and file, with sizes and times), so
    it is recomputed whenever the data changes: an empty class is reported as soon as it is
    created, a deleted one is gone at once, in every browser session.
    Raises InspectorError when the folder holds nothing usable."""
    return _checked(str(ws.data_dir), ws.fingerprint())


def dataset_summary(dataset: LabeledDataset) -> str:
    """'120 images in 5 classes (crack 24, ...)', and the classes left out of training, if any."""
    counts = ", ".join(f"{k} {v}" for k, v in dataset.counts().items())
    text = f"{count(len(dataset), 'image')} in {count(len(dataset.classes), 'class')} ({counts})"
    if dataset.empty_classes:
        text += f"; left out of training, no images: {listing(dataset.empty_classes)}"
    return text + "."


def import_message(report: ImportReport, verb: str = "Saved", into: str | None = None) -> tuple[str, str] | None:
    """(kind, message) for an import: how many images were new and how many were already there.
    None when nothing was saved and nothing was a copy: then only the skipped files have a story."""
    n, copies = report.n_saved, report.n_copies
    where = f" into class '{into}'" if into else ""
    place = f"class '{into}'" if into else "the workspace"
    if n == 0 and copies == 0:
        return None
    if n == 0:
        every = "the image is" if copies == 1 else f"all {copies:,} images are"
        return "info", f"Nothing new: {every} already in {place} (exact copies), so nothing was saved."
    per_class = "" if into else " (" + ", ".join(f"{k} {v}" for k, v in report.counts().items() if v) + ")"
    if report.copies_kept:
        tail = (f"; {copies} of them {'is an exact copy' if copies == 1 else 'are exact copies'} of images "
                "already there, kept as you chose") if copies else ""
        return "success", f"{verb} {count(n, 'image')}{where}{per_class}{tail}."
    tail = (f"; {copies} {'was' if copies == 1 else 'were'} skipped as already present "
            f"(exact {'copy' if copies == 1 else 'copies'})") if copies else ""
    return "success", f"{verb} {count(n, 'new image' if copies else 'image')}{where}{per_class}{tail}."


@st.cache_data(show_spinner=False, max_entries=2000)
def thumbnail(path: str, mtime_ns: int, size: int = 160) -> bytes | None:
    try:
        return image_bytes_to_thumbnail(Path(path).read_bytes(), size)
    except Exception:  # noqa: BLE001 - a broken file shows as a placeholder, the report says why
        return None


def thumbnail_of(path: Path, size: int = 160) -> bytes | None:
    try:
        return thumbnail(str(path), path.stat().st_mtime_ns, size)
    except OSError:
        return None


def rgb(source: str | Path | bytes) -> np.ndarray:
    return to_rgb_array(load_image(source))
