"""The shift meter on a workspace (issue 21): how different the other line's images (source/) look from
this line's (data/ and unlabeled/), measured once per content of the three folders and kept on disk, so
a rerun, a page change or a restart shows the figure at once.

The figure is `shift_between`: tasks.classification.transfer.shift's domain classifier AUROC on the
linear probe's frozen features (evidence.features); this module computes it on datasets, keys it by the
folders' content and stores it.
"""
from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from .._io import atomic_write_json, read_json

if TYPE_CHECKING:
    from ..workspace import Workspace

__all__ = ["cached_shift", "measure_line_shift", "shift_between", "shift_key", "shift_ready"]

CACHE_NAME = ".shift-cache.json"
MAX_ENTRIES = 16  # the latest contents measured; older ones are forgotten


def shift_key(ws: Workspace) -> str:
    """A digest of the three folders' listings (names, sizes, times): changes whenever an image does."""
    digest = hashlib.sha1()
    for part in ("source", "data", "unlabeled"):
        digest.update(f"{part}:{ws.fingerprint(part)};".encode())
    return digest.hexdigest()


def shift_ready(ws: Workspace) -> bool:
    """True when there is something to compare: the other line's images and some of this line's."""
    return ws.n_source() > 0 and (ws.n_images() > 0 or ws.n_unlabeled() > 0)


def _cache(ws: Workspace) -> dict[str, Any]:
    try:
        data = read_json(ws.root / CACHE_NAME)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def cached_shift(ws: Workspace, key: str | None = None) -> dict[str, Any] | None:
    """The stored measurement for the folders' current content (`key`, by default measured now):
    {"shift": Shift.to_dict() or None when either line has too few images}; None when not measured."""
    entry = _cache(ws).get(key or shift_key(ws))
    return entry if isinstance(entry, dict) and "shift" in entry else None


def measure_line_shift(ws: Workspace, *, cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Measure the shift between the workspace's lines (frozen features: seconds to minutes on a CPU,
    run it as background work) and store it under the folders' content; returns the stored entry."""
    key = shift_key(ws)
    source = ws.source_dataset()
    shift = None
    if source is not None:
        shift = shift_between(source, ws.dataset(), ws.unlabeled_dataset(), cache_dir=cache_dir)
    entry = {"shift": shift.to_dict() if shift is not None else None, "key": key}
    cache = _cache(ws)
    cache.pop(key, None)
    cache[key] = entry  # newest last
    ws.root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(ws.root / CACHE_NAME, dict(list(cache.items())[-MAX_ENTRIES:]))
    return entry


def shift_between(source, target=None, unlabeled=None, *, backbone: str = "tf_efficientnet_lite0",
                  cache_dir=None, seed: int = 0) -> Any:
    """The shift meter on datasets (the Data page, before any training): `source` another line's
    LabeledDataset, `target` this line's labelled one and/or `unlabeled` its unlabelled images
    (data.discover_images); frozen features of `backbone` (evidence.features, `cache_dir` keeps them
    between processes). None when either line has fewer than MIN_PER_DOMAIN images."""
    from ..tasks.classification.transfer.shift import measure_shift
    from .features import frozen_features

    source_features = frozen_features(source, backbone, cache_dir=cache_dir)
    rows, labels = [], []
    if target is not None and len(target):
        features = frozen_features(target, backbone, cache_dir=cache_dir)
        rows.append(features.features)
        # this line's labels as indices into the source's classes (-1: a class the source lacks)
        labels.append(np.array([source.classes.index(target.classes[k]) if target.classes[k] in source.classes
                                else -1 for k in features.labels], dtype=int))
    if unlabeled is not None and len(unlabeled):
        rows.append(frozen_features(unlabeled, backbone, cache_dir=cache_dir).features)
        labels.append(np.full(len(unlabeled), -1))
    if not rows:
        return None
    return measure_shift(source_features.features, source_features.labels, np.concatenate(rows),
                         np.concatenate(labels), list(source.classes), seed=seed)
