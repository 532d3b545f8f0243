from __future__ import annotations

import numpy as np
import pytest
import torch

from inspector.augment import AUGMENT_PRESETS, build_transform, letterbox_box, resolve_preprocessing
from inspector.errors import InspectorError


def _image(width=320, height=160):
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (height, width, 3), dtype=np.uint8)


def _ramp(width=320, height=160):
    """Smooth, so shrinking keeps it (pixel noise averages out to grey when shrunk)."""
    row = np.linspace(0, 255, width).astype(np.uint8)
    return np.repeat(np.tile(row, (height, 1))[:, :, None], 3, axis=2)


def test_preprocessing_comes_from_the_backbone_config():
    lite = resolve_preprocessing("tf_efficientnet_lite0")
    assert (lite.image_size, lite.mean, lite.std) == (224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    resnet = resolve_preprocessing("resnet18", image_size=160)
    assert resnet.image_size == 160 and resnet.mean == pytest.approx((0.485, 0.456, 0.406))


@pytest.mark.parametrize("preset", sorted(AUGMENT_PRESETS))
def test_every_preset_gives_the_backbone_input(preset):
    x = build_transform(resolve_preprocessing("tf_efficientnet_lite0", 96), preset)(_image())
    assert isinstance(x, torch.Tensor) and x.shape == (3, 96, 96) and x.dtype == torch.float32


def test_letterbox_keeps_the_aspect_ratio_and_pads_with_the_mean():
    prep = resolve_preprocessing("tf_efficientnet_lite0", 100, resize_mode="letterbox")
    x = build_transform(prep, "none")(_ramp(320, 160))
    left, top, right, bottom = letterbox_box(prep, 320, 160)
    assert (left, top, right, bottom) == (0, 25, 100, 75)
    assert torch.allclose(x[:, :top, :], torch.zeros(1), atol=0.01)  # mean colour normalises to 0
    assert x[:, top:bottom, :].abs().mean() > 0.3  # the image itself


def test_crop_mode_fills_the_square():
    prep = resolve_preprocessing("tf_efficientnet_lite0", 100, resize_mode="crop")
    x = build_transform(prep, "none")(np.full((160, 320, 3), 230, dtype=np.uint8))
    assert x[:, :5, :].abs().mean() > 0.3


def test_augmentation_is_random_but_seedable():
    prep = resolve_preprocessing("tf_efficientnet_lite0", 64)
    first, second = (build_transform(prep, "industrial", seed=1) for _ in range(2))
    a = [first(_image()) for _ in range(3)]
    b = [second(_image()) for _ in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], a[1])


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(InspectorError, match="industrial"):
        build_transform(resolve_preprocessing("tf_efficientnet_lite0"), "fancy")


def test_stretch_is_the_default_and_fills_the_input():
    prep = resolve_preprocessing("tf_efficientnet_lite0", 100)
    assert prep.resize_mode == "stretch"
    x = build_transform(prep, "none")(np.full((160, 320, 3), 230, dtype=np.uint8))
    assert x[:, :5, :].abs().mean() > 0.3 and x[:, -5:, :].abs().mean() > 0.3


def test_shrinking_averages_fine_texture_instead_of_aliasing_it():
    # A one-pixel checkerboard is pure fine texture: shrunk 4x it should turn mid-grey, as a camera
    # would see it from further away, not into a random moire of black and white.
    checker = (np.indices((400, 400)).sum(0) % 2 * 255).astype(np.uint8)
    image = np.repeat(checker[:, :, None], 3, axis=2)
    prep = resolve_preprocessing("tf_efficientnet_lite0", 100)
    assert prep.antialias
    x = build_transform(prep, "none")(image)
    assert x.abs().max() < 0.05  # mid-grey normalises to ~0 with lite0's mean/std of 0.5


def test_runs_stored_before_antialiasing_keep_their_resize():
    from inspector.augment import Preprocessing

    stored = resolve_preprocessing("tf_efficientnet_lite0").to_dict()
    del stored["antialias"]  # written by an older version
    assert Preprocessing.from_dict(stored).antialias is False
    assert Preprocessing.from_dict(resolve_preprocessing("tf_efficientnet_lite0").to_dict()).antialias is True
