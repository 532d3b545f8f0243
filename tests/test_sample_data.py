"""The sample dataset generator, the committed `sample_data/`, and proof that the bundled
pretrained weights are real: their frozen features separate the sample classes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspector.sample_data import (DEFECTS, IMAGE_SIZE, SAMPLE_CLASSES, generate_sample_data,
                                   render_image)

COMMITTED = Path(__file__).resolve().parents[1] / "sample_data"
COMMITTED_PER_CLASS = 24
COMMITTED_NEW_PARTS = 10


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*.jpg"))


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_every_defect_is_a_sample_class():
    assert SAMPLE_CLASSES[0] == "ok"
    assert set(SAMPLE_CLASSES[1:]) == set(DEFECTS)
    assert 4 <= len(SAMPLE_CLASSES) <= 6


def test_generation_is_deterministic(tmp_path):
    first = generate_sample_data(tmp_path / "a", seed=3, images_per_class=2, new_parts=5)
    second = generate_sample_data(tmp_path / "b", seed=3, images_per_class=2, new_parts=5)
    assert first == tmp_path / "a"
    assert _files(first) == _files(second)
    for rel in _files(first):
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel
    other = generate_sample_data(tmp_path / "c", seed=4, images_per_class=1, new_parts=0)
    assert not np.array_equal(_pixels(first / "train/ok/ok_00.jpg"), _pixels(other / "train/ok/ok_00.jpg"))


def test_layout_names_counts_and_sizes(tmp_path):
    out = generate_sample_data(tmp_path, seed=0, images_per_class=2, new_parts=7)
    assert sorted(p.name for p in (out / "train").iterdir()) == sorted(SAMPLE_CLASSES)
    for name in SAMPLE_CLASSES:
        assert sorted(p.name for p in (out / "train" / name).iterdir()) == [f"{name}_00.jpg", f"{name}_01.jpg"]
    new_parts = sorted(p.name for p in (out / "new_parts").iterdir())
    assert len(new_parts) == 7
    assert {name.rsplit("_", 1)[0] for name in new_parts} == set(SAMPLE_CLASSES)
    for path in out.rglob("*.jpg"):
        with Image.open(path) as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", IMAGE_SIZE)


def test_images_are_not_flat_and_defects_change_them():
    pixels = {label: render_image(label, np.random.default_rng(7)) for label in SAMPLE_CLASSES}
    ok = pixels["ok"].astype(float)
    assert pixels["ok"].shape == (IMAGE_SIZE[1], IMAGE_SIZE[0], 3)
    assert 2.0 < ok.std() < 60.0  # textured, not blank, not noise soup
    for label in SAMPLE_CLASSES[1:]:
        changed = np.abs(pixels[label].astype(float) - ok).max(axis=2) > 12
        assert 0.0005 < changed.mean() < 0.15, label  # a small defect, not the whole image


def test_unknown_label_is_refused():
    with pytest.raises(ValueError, match="Unknown sample class"):
        render_image("rust", np.random.default_rng(0))


def test_committed_sample_data_matches_the_generator(tmp_path):
    assert sorted(p.name for p in (COMMITTED / "train").iterdir()) == sorted(SAMPLE_CLASSES)
    for name in SAMPLE_CLASSES:
        assert len(list((COMMITTED / "train" / name).glob("*.jpg"))) == COMMITTED_PER_CLASS
    assert len(list((COMMITTED / "new_parts").glob("*.jpg"))) == COMMITTED_NEW_PARTS
    assert sum(p.stat().st_size for p in COMMITTED.rglob("*") if p.is_file()) < 5_000_000
    assert (COMMITTED / "README.md").is_file()
    # Regenerating reproduces the committed pixels (a tolerance for other JPEG library builds).
    fresh = generate_sample_data(tmp_path, seed=0, images_per_class=1, new_parts=len(SAMPLE_CLASSES))
    for rel in _files(fresh):
        diff = np.abs(_pixels(fresh / rel) - _pixels(COMMITTED / rel))
        assert diff.mean() < 1.0, rel


# --------------------------------------------------------------------------- bundled weights are real

def _sample_images() -> tuple[list[Path], np.ndarray]:
    paths, labels = [], []
    for index, name in enumerate(SAMPLE_CLASSES):
        found = sorted((COMMITTED / "train" / name).glob("*.jpg"))
        paths += found
        labels += [index] * len(found)
    return paths, np.array(labels)


def _frozen_features(paths: list[Path], *, pretrained: bool) -> np.ndarray:
    import timm
    import torch

    from inspector.backbones import create_model

    torch.manual_seed(0)  # the random initialisation, when pretrained=False
    model = create_model("tf_efficientnet_lite0", num_classes=len(SAMPLE_CLASSES), pretrained=pretrained).eval()
    config = timm.data.resolve_model_data_config(model)
    size = config["input_size"][-1]
    resample = Image.Resampling[config["interpolation"].upper()]
    images = np.stack([np.asarray(Image.open(p).convert("RGB").resize((size, size), resample)) for p in paths])
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(config["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(config["std"]).view(1, 3, 1, 1)
    batch = (batch - mean) / std
    with torch.inference_mode():
        features = [model.forward_head(model.forward_features(chunk), pre_logits=True)
                    for chunk in batch.split(32)]
    return torch.cat(features).numpy()


def _linear_probe_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(n_splits=4, shuffle=True, random_state=0)
    return float(cross_val_score(probe, features, labels, cv=folds).mean())


@pytest.mark.slow
def test_bundled_pretrained_weights_separate_the_sample_classes():
    """Frozen ImageNet features + logistic regression tell the defects apart; random ones can't.

    Measured on the committed set (120 images, 4-fold stratified CV): pretrained 0.908, random
    init (torch seed 0) 0.308; chance is 0.2. Other generator seeds gave pretrained 0.867 and
    0.933, random 0.17-0.32. Random weights, or weights silently left unloaded, fail both the
    floor and the margin.
    """
    import torch

    torch.set_num_threads(2)
    paths, labels = _sample_images()
    pretrained = _linear_probe_accuracy(_frozen_features(paths, pretrained=True), labels)
    random_init = _linear_probe_accuracy(_frozen_features(paths, pretrained=False), labels)
    assert pretrained >= 0.8, f"pretrained features: {pretrained:.3f}"
    assert pretrained - random_init >= 0.4, f"pretrained {pretrained:.3f} vs random {random_init:.3f}"
