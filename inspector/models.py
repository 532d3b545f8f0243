"""Model heads on top of timm backbones, and rebuilding a stored model from its recipe.

Two architectures:
  timm        the backbone's own classifier (global average pool + linear): fine-tuning
  multiscale  GeM-pooled features from the last stages *and* the final feature map,
              concatenated, + linear: frozen-feature training. Small defects light up a few
              positions of a mid-level feature map; average pooling of the last map alone
              dilutes them (measured on magnetic-tile in docs/BENCHMARKS.md).
              With `symmetric`, the features are averaged over the 8 flips and quarter turns
              of the image: a scratch is a scratch whichever way the part lies, and the
              averaged features are steadier with few images (+3 to +4 points, same benchmark).
              With `power_norm`, each pooled value x becomes sign(x) sqrt(|x|): it evens out a few
              large activations so the shared-covariance head (tasks/classification/linear.py) fits the
              features better (+2 points at 10 images per class, same benchmark).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn

from .backbones import create_model

GEM_POWER = 3.0
VIEW_CHUNK = 8  # images whose 8 symmetric views share one backbone pass (64 views: bounded memory)


def gem(feature_map: torch.Tensor, power: float = GEM_POWER) -> torch.Tensor:
    """Generalised-mean pooling of (B, C, H, W): between average (p=1) and max pooling."""
    return feature_map.float().clamp(min=1e-6).pow(power).mean((2, 3)).pow(1.0 / power)


def dihedral_views(x: torch.Tensor) -> Iterator[torch.Tensor]:
    """The 8 flips and quarter turns of a batch of square images (B, C, H, W)."""
    for turned in (x, x.transpose(2, 3)):
        yield from (turned, turned.flip(3), turned.flip(2), turned.flip(2, 3))


class MultiScaleClassifier(nn.Module):
    """A timm backbone whose last stages and final features are GeM-pooled into one vector,
    optionally averaged over the image's 8 symmetric views (see the module docstring)."""

    def __init__(self, backbone: nn.Module, num_classes: int, stage_indices: list[int],
                 symmetric: bool = False, power_norm: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.stage_indices = list(stage_indices)
        self.symmetric = symmetric
        self.power_norm = power_norm
        dims = [backbone.feature_info[i]["num_chs"] for i in self.stage_indices] + [backbone.num_features]
        self.head = nn.Linear(sum(dims), num_classes)
        self.pretrained_cfg = backbone.pretrained_cfg

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.symmetric:  # the 8 views of a few images at a time, in one backbone pass
            features = torch.cat([self._symmetric_pooled(chunk) for chunk in x.split(VIEW_CHUNK)])
        else:
            features = self._pooled_view(x)
        return features.sign() * features.abs().sqrt() if self.power_norm else features

    def _symmetric_pooled(self, x: torch.Tensor) -> torch.Tensor:
        # One pass over all 8 views was 1.45x faster on 2 CPU cores than one pass per view
        # (docs/BENCHMARKS.md). Flips and transposes lose the channels-last layout: restore it.
        views = torch.cat(list(dihedral_views(x))).contiguous(memory_format=torch.channels_last)
        return self._pooled_view(views).reshape(8, x.shape[0], -1).mean(0)

    def _pooled_view(self, x: torch.Tensor) -> torch.Tensor:
        final, stages = self.backbone.forward_intermediates(x, indices=self.stage_indices, intermediates_only=False)
        # A CNN's final map is (B, C, H, W); a ViT's is tokens, pooled the model's own way.
        last = gem(final) if final.dim() == 4 else self.backbone.forward_head(final, pre_logits=True).float()
        return torch.cat([gem(s) for s in stages] + [last], dim=1)

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled_features(x))


def default_stage_indices(backbone: nn.Module) -> list[int]:
    """The last three feature stages (e.g. strides 8, 16, 32 on a CNN)."""
    n = len(backbone.feature_info)
    return list(range(max(0, n - 3), n))


def pooled_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The vector the classifier layer sees, for either architecture."""
    if isinstance(model, MultiScaleClassifier):
        return model.pooled_features(x)
    return model.forward_head(model.forward_features(x), pre_logits=True)


def build_model(backbone: str, num_classes: int, architecture: str = "timm", *, pretrained: bool = True,
                weights_path: str | os.PathLike | None = None, stage_indices: list[int] | None = None,
                symmetric: bool = False, power_norm: bool = True) -> nn.Module:
    """A classifier of the given architecture, with pretrained backbone weights when asked.
    `symmetric` and `power_norm` apply to the multiscale head (fine-tuning learns orientation from
    augmentation); new multiscale models use power normalisation, stored ones say in their recipe."""
    if architecture == "timm":
        return create_model(backbone, num_classes, pretrained=pretrained, weights_path=weights_path)
    if architecture == "multiscale":
        body = create_model(backbone, 0, pretrained=pretrained, weights_path=weights_path)
        return MultiScaleClassifier(body, num_classes, stage_indices or default_stage_indices(body), symmetric,
                                    power_norm)
    raise ValueError(f"unknown architecture {architecture!r}")


@contextmanager
def single_view(model: nn.Module) -> Iterator[nn.Module]:
    """The model without symmetric averaging, for the duration (a heatmap needs one view)."""
    symmetric = getattr(model, "symmetric", False)
    if symmetric:
        model.symmetric = False
    try:
        yield model
    finally:
        if symmetric:
            model.symmetric = True


def architecture_recipe(model: nn.Module) -> dict[str, Any]:
    if isinstance(model, MultiScaleClassifier):
        return {"architecture": "multiscale", "stage_indices": model.stage_indices, "symmetric": model.symmetric,
                "power_norm": model.power_norm}
    return {"architecture": "timm"}


def model_from_recipe(recipe: dict[str, Any]) -> nn.Module:
    """An untrained model shaped like the stored one (weights are loaded by the caller)."""
    return build_model(recipe["backbone"], recipe["num_classes"], recipe.get("architecture", "timm"),
                       pretrained=False, stage_indices=recipe.get("stage_indices"),
                       symmetric=recipe.get("symmetric", False), power_norm=recipe.get("power_norm", False))


__all__ = ["MultiScaleClassifier", "build_model", "dihedral_views", "gem", "model_from_recipe", "pooled_features",
           "single_view"]
