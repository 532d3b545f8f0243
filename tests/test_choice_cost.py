"""Issue 20: what a choice costs, measured where it is made (views, image size, strategy)."""
from __future__ import annotations

import pytest

from inspector.engine.cost import TRAIN_STEP_FORWARDS, ChoiceCost, measure_choice_cost


def test_the_costs_follow_from_one_measured_forward_pass():
    cost = ChoiceCost(forward_ms=25.0, image_size=224, device="cpu")
    assert cost.predict_ms(8) == 200.0 and cost.predict_ms(1) == 25.0
    assert cost.linear_probe_s(40, views=8) == pytest.approx(8.0)  # 40 images x 8 views x 25 ms
    assert cost.epoch_s(40) == pytest.approx(40 * 25.0 * TRAIN_STEP_FORWARDS / 1000)


def test_a_larger_image_costs_more_on_this_computer():
    small = measure_choice_cost("tf_efficientnet_lite0", 64, device="cpu")
    large = measure_choice_cost("tf_efficientnet_lite0", 256, device="cpu")
    assert 0 < small.forward_ms < large.forward_ms  # 16x the pixels
    assert small.device == "cpu" and large.image_size == 256
