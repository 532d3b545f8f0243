"""Shared helpers of the reliability tests (issue 5): small datasets, file digests, thread limits."""
from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from image_factories import image_bytes, noise_image

# The test machines have two cores shared with other work. Oversubscribed OpenMP/BLAS threads
# spin-wait there and run ten times slower, so the subprocesses and the long in-process tests
# use one thread each: these tests check what survives, not how fast.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SUBPROCESS_ENV = {**os.environ, **ONE_THREAD, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
CLI = [sys.executable, "-m", "inspector.cli"]


def small_dataset(root: Path, per_class: int = 5) -> Path:
    """`root/ok` and `root/nok` with distinct 48 px noise images: trains in seconds."""
    for c, label in enumerate(("nok", "ok")):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / label / f"{label}{i}.png").write_bytes(image_bytes(noise_image(100 * c + i), "PNG"))
    return root


def digest(folder: Path) -> dict[str, str]:
    """File name -> sha256 of every file in a folder (to show nothing changed)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """One torch and one BLAS thread in this process for the duration (restored afterwards)."""
    import scipy.optimize  # noqa: F401 - threadpoolctl limits only the BLAS libraries already loaded
    import torch
    from threadpoolctl import threadpool_limits

    import inspector.training  # noqa: F401 - (timm, albumentations and OpenCV bring their own)

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)
