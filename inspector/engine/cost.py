"""What a choice costs on this computer, measured before training (the Train page shows it where
the choice is made): one forward pass of the backbone at the chosen image size, and what follows
from it for the 8 symmetric views, a linear probe and an epoch of fine-tuning."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import timm
import torch

from .device import prepare_model, resolve_device, to_device

# A training step (forward, backward, optimiser) costs about three forward passes (the usual rule of
# thumb for convolutional nets: the backward pass is about twice the forward).
TRAIN_STEP_FORWARDS = 3.0


@dataclass(frozen=True)
class ChoiceCost:
    """Measured milliseconds per image for one forward pass (batch 1, one view) on this device."""

    forward_ms: float
    image_size: int
    device: str

    def predict_ms(self, views: int = 1) -> float:
        """One image predicted through `views` views (the linear probe's 8 flips and turns: 8)."""
        return self.forward_ms * max(1, views)

    def linear_probe_s(self, n_images: int, views: int = 1) -> float:
        """Seconds to extract the frozen features of `n_images` (the probe's fit itself is instant)."""
        return n_images * self.predict_ms(views) / 1000

    def epoch_s(self, n_images: int) -> float:
        """Seconds for one fine-tuning epoch over `n_images` (TRAIN_STEP_FORWARDS forwards each)."""
        return n_images * self.forward_ms * TRAIN_STEP_FORWARDS / 1000


def measure_choice_cost(backbone: str, image_size: int, device: str = "auto", repeats: int = 3) -> ChoiceCost:
    """Time `repeats` forward passes of `backbone` (random weights: the cost does not depend on them)
    on one image of `image_size` px after one warm-up; the median, in ms. About a second on a CPU.

    Raises RuntimeError from timm for an unknown backbone name."""
    torch_device = resolve_device(device)
    model = prepare_model(timm.create_model(backbone, pretrained=False, num_classes=0).eval(), torch_device)
    image = to_device(torch.rand(1, 3, image_size, image_size), torch_device)
    times = []
    with torch.inference_mode():
        for i in range(repeats + 1):
            start = time.perf_counter()
            model(image)
            if torch_device.type == "cuda":
                torch.cuda.synchronize(torch_device)
            if i:  # the first pass warms caches and kernels up
                times.append(1000 * (time.perf_counter() - start))
    return ChoiceCost(round(statistics.median(times), 2), image_size, torch_device.type)
