"""Device choice and the per-device settings that make training fast there."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ..errors import InspectorError


@dataclass(frozen=True)
class DeviceInfo:
    type: str  # cpu | cuda | mps
    name: str
    memory_gb: float | None = None

    @property
    def label(self) -> str:
        mem = f", {self.memory_gb:.0f} GB" if self.memory_gb else ""
        return f"{self.type.upper()} ({self.name}{mem})"


def resolve_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise InspectorError("No CUDA GPU is available on this computer; use --device cpu or auto.")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InspectorError("Apple MPS is not available on this computer; use --device cpu or auto.")
    return torch.device(requested)


def describe_device(device: torch.device | str = "auto") -> DeviceInfo:
    device = resolve_device(device) if isinstance(device, str) else device
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return DeviceInfo("cuda", props.name, props.total_memory / 2**30)
    if device.type == "mps":
        return DeviceInfo("mps", "Apple GPU")
    import os

    return DeviceInfo("cpu", f"{os.cpu_count()} cores, {torch.get_num_threads()} threads")


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA (bf16 where supported, else fp16); full precision elsewhere."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def needs_grad_scaler(device: torch.device) -> bool:
    return device.type == "cuda" and not torch.cuda.is_bf16_supported()


def memory_mb(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return None


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    # channels_last roughly doubles CPU throughput for depthwise-conv nets like EfficientNet-Lite
    # and feeds tensor cores on CUDA.
    return model.to(device=device, memory_format=torch.channels_last)


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    return batch.to(device, non_blocking=True, memory_format=torch.channels_last)


# A training's peak device memory, for sharing a GPU between racing runs: the bundled lite backbones
# fine-tune at batch 16-64 under mixed precision in well under this (with room for the allocator).
GPU_GIB_PER_TRAINING = 4.0
# A worker process with torch, a backbone and its images in host memory.
HOST_GIB_PER_TRAINING = 2.0


def race_slots(device: torch.device | str = "auto", *, cores: int | None = None) -> int:
    """How many trainings may run at the same time on `device`, each in a process of its own.

    CPU: one per core (each keeps at least one thread; the cores are shared out between the runs),
    at most as many as the free host memory holds (HOST_GIB_PER_TRAINING each). GPU: as many as its
    free memory holds (GPU_GIB_PER_TRAINING each), at most one per core. INSPECTOR_PARALLEL_TRAININGS
    (a whole number >= 1) overrides the choice. Returns >= 1.
    """
    import os

    import psutil

    override = os.environ.get("INSPECTOR_PARALLEL_TRAININGS", "").strip()
    if override:
        try:
            return max(1, int(override))
        except ValueError:
            raise InspectorError(f"INSPECTOR_PARALLEL_TRAININGS must be a whole number, got {override!r}.") from None
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:
            cores = os.cpu_count() or 1
    host = int(psutil.virtual_memory().available / 2**30 // HOST_GIB_PER_TRAINING)
    slots = min(cores, host)
    device = resolve_device(device) if isinstance(device, str) else device
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        slots = min(slots, int(free / 2**30 // GPU_GIB_PER_TRAINING))
    return max(1, slots)
