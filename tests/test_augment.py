from __future__ import annotations

import numpy as np
import pytest
import torch

from inspector.augment import AUGMENT_PRESETS, build_transform, letterbox_box, resolve_preprocessing
from inspector.errors import InspectorError


def _image(width=320, height=160):
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (height, width, 3), dtype=np.uint8)


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
    x = build_transform(prep, "none")(_image(320, 160))
    left, top, right, bottom = letterbox_box(prep, 320, 160)
    assert (left, top, right, bottom) == (0, 25, 100, 75)
    assert torch.allclose(x[:, :top, :], torch.zeros(1), atol=0.01)  # mean colour normalises to 0
    assert x[:, top:bottom, :].abs().mean() > 0.3  # the image itself


def test_crop_mode_fills_the_square():
    prep = resolve_preprocessing("tf_efficientnet_lite0", 100, resize_mode="crop")
    x = build_transform(prep, "none")(_image(320, 160))
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
    x = build_transform(prep, "none")(_image(320, 160))
    assert x[:, :5, :].abs().mean() > 0.3 and x[:, -5:, :].abs().mean() > 0.3
