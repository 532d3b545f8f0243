"""Cached reads of the workspace for the pages (keyed by what is on disk, so never stale)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import streamlit as st

from inspector import LabeledDataset, ValidationReport, validate_dataset
from inspector.data import load_image, to_rgb_array
from inspector.workspace import Workspace, image_bytes_to_thumbnail


def fingerprint(folder: Path) -> tuple:
    """Names, sizes and times of every file below `folder`: changes whenever the data changes."""
    entries = []
    for current, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            try:
                stat = os.stat(os.path.join(current, name))
            except OSError:
                continue
            entries.append((current, name, stat.st_size, stat.st_mtime_ns))
    return tuple(entries)


@st.cache_data(show_spinner="Checking the images...", max_entries=4)
def _checked(data_dir: str, _fingerprint: tuple, key: int) -> tuple[LabeledDataset | None, ValidationReport | None]:
    ws = Workspace(Path(data_dir).parent)
    dataset = ws.dataset()
    return dataset, (validate_dataset(dataset) if dataset is not None else None)


def checked_dataset(ws: Workspace) -> tuple[LabeledDataset | None, ValidationReport | None]:
    """The workspace dataset and its validation report (None, None when there are no images).
    Raises InspectorError when the folder holds nothing usable."""
    fp = fingerprint(ws.data_dir)
    return _checked(str(ws.data_dir), fp, hash(fp))


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
