"""Shared fixtures: small real datasets built by the project's own generator, CPU settings."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAGNETIC_TILE = REPO.parent / "shared" / "datasets" / "magnetic-tile"

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network


@pytest.fixture(autouse=True)
def _workspace_in_tmp(tmp_path, monkeypatch):
    """The CLI and the app default to ~/DefectInspector: tests write only under tmp_path."""
    monkeypatch.setenv("INSPECTOR_WORKSPACE", str(tmp_path / "default-workspace"))
    monkeypatch.setenv("INSPECTOR_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """3 classes x 8 generated images: enough to train on in seconds."""
    from inspector.sample_data import generate_sample_data

    out = tmp_path_factory.mktemp("tiny")
    generate_sample_data(out, seed=7, images_per_class=8, new_parts=3)
    train = out / "train"
    for extra in ("dent", "stain"):  # keep ok / scratch / crack
        for f in (train / extra).iterdir():
            f.unlink()
        (train / extra).rmdir()
    return train


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory):
    """One trained linear-probe run, shared by the read-only tests."""
    from inspector import TrainConfig, train

    runs = tmp_path_factory.mktemp("runs")
    return train(tiny_data, TrainConfig(strategy="linear_probe", image_size=128, seed=1, max_folds=3), runs_dir=runs)


@pytest.fixture(scope="session")
def magnetic_tile() -> Path:
    if not MAGNETIC_TILE.is_dir():
        pytest.fail(f"the real dataset is missing at {MAGNETIC_TILE} (see ../shared/datasets/README.md)")
    return MAGNETIC_TILE
