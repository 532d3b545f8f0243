"""Data-parallel training over several processes: torchrun's ranks, PyTorch's process group.

`torchrun --nproc-per-node N -m inspector train ...` starts N copies of the same command; each
reads its place from the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK). `Ranks`
carries that place through a fit and offers the few collective operations the engine needs:
shards of the images, sums of metrics, and gathering rows back into their original order.

A single process (no torchrun) gets `SINGLE`: every operation is then a no-op, so the engine's
code reads the same with and without distribution. The backend is NCCL on GPUs, gloo on CPUs.
A rank that dies fails the others within `timeout_s` (a collective raises, or torchrun stops
them with SIGTERM): `DistributedFailure` turns both into a plain error and a failed run.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist

from ..errors import InspectorError

DEFAULT_TIMEOUT_S = 300.0  # a collective that waits longer than this for a dead rank fails


class DistributedFailure(InspectorError):
    """Another process of a distributed training stopped, so this one cannot go on."""


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes (rank 0 writes the run store)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> np.ndarray:
        """The indices of n items this rank handles (every world_size-th, from its rank)."""
        return np.arange(self.rank, n, self.world_size)

    def gather_rows(self, rows: np.ndarray, n: int) -> np.ndarray:
        """Rows computed for `shard(n)` on every rank -> all n rows in their original order."""
        if not self.active:
            return rows
        parts: list[Any] = [None] * self.world_size
        _collective(dist.all_gather_object, parts, np.ascontiguousarray(rows))
        first = next(p for p in parts if len(p))  # a rank may hold no rows when n < world_size
        out = np.empty((n, *first.shape[1:]), dtype=first.dtype)
        for rank, part in enumerate(parts):
            if len(part):
                out[np.arange(rank, n, self.world_size)] = part
        return out

    def sum(self, values: Sequence[float], device: torch.device) -> list[float]:
        """Element-wise sum of the values over all ranks (losses and counts of one epoch)."""
        if not self.active:
            return list(values)
        tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
        _collective(dist.all_reduce, tensor)
        return tensor.tolist()

    def gather_objects(self, value: Any) -> list[Any]:
        """Every rank's value, in rank order (small picklable results, e.g. one fold's predictions)."""
        if not self.active:
            return [value]
        parts: list[Any] = [None] * self.world_size
        _collective(dist.all_gather_object, parts, value)
        return parts

    def broadcast(self, value: Any) -> Any:
        """Rank 0's value, on every rank (e.g. the run id rank 0 created)."""
        if not self.active:
            return value
        box = [value]
        _collective(dist.broadcast_object_list, box, src=0)
        return box[0]

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The model wrapped for data-parallel gradients (DDP), or itself in a single process."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, output_device=device.index if ids else None)

    def device_for(self, device: torch.device) -> torch.device:
        """One GPU per local rank; CPUs are shared."""
        if self.active and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device


SINGLE = Ranks()


def ranks_from_environment(environ: dict[str, str] | None = None) -> Ranks:
    """The ranks torchrun (or any launcher using its variables) gave this process, else SINGLE."""
    env = os.environ if environ is None else environ
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank, local = int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", "0"))
    except ValueError as exc:
        raise InspectorError(f"The distributed launch variables are not numbers: {exc}") from exc
    if world < 1 or not 0 <= rank < world:
        raise InspectorError(f"Bad distributed launch: RANK={rank}, WORLD_SIZE={world}.")
    return Ranks(rank, world, local)


def _collective(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except (RuntimeError, dist.DistBackendError) as exc:
        raise DistributedFailure(
            "Another process of this distributed training stopped or stopped answering, so the run cannot "
            f"go on ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no details'}).") from exc


@contextlib.contextmanager
def process_group(ranks: Ranks, device: torch.device, timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[None]:
    """Join the other ranks for the duration of a training (no-op in a single process).

    Also turns torchrun's SIGTERM (sent to the survivors when a rank dies) into DistributedFailure,
    so the run is recorded as failed instead of vanishing mid-write."""
    if not ranks.active or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=ranks.rank,
                            world_size=ranks.world_size, timeout=timedelta(seconds=timeout_s))
    previous = _on_sigterm(ranks)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        with contextlib.suppress(Exception):  # a peer may already be gone; nothing left to tidy
            dist.destroy_process_group()


def _on_sigterm(ranks: Ranks):
    if threading.current_thread() is not threading.main_thread():
        return None  # signals reach the main thread only

    def stop(signum, frame):  # noqa: ARG001 - signal handler signature
        if sys.exc_info()[1] is not None:
            return  # already failing (a collective raised first): let the failure be recorded
        raise DistributedFailure(f"Rank {ranks.rank} was told to stop (SIGTERM): another process of this "
                                 "distributed training failed or the launcher was interrupted.")
    return signal.signal(signal.SIGTERM, stop)
