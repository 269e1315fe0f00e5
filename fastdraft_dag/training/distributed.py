"""Multi-process data parallelism (torch DDP), set up from the variables torchrun exports.

One process per device; gloo on CPU, nccl on CUDA. Every process draws the same global batch
plan and trains on its slice (see `data.py`), DDP averages gradients, and one small all-reduce per
step shares the loss and any stop request, so every rank takes the same decisions (log, stop,
raise) at the same step. With WORLD_SIZE unset or 1 everything here is a no-op.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from datetime import timedelta
from types import FrameType

import torch
import torch.distributed as dist

from fastdraft_dag.training.backends import device_for


@dataclass(frozen=True)
class World:
    """This process's place: rank, world size, local rank (device index)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env() -> World:
    return World(
        rank=int(os.environ.get("RANK", "0")),
        size=int(os.environ.get("WORLD_SIZE", "1")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def init_world(backend: str, timeout_s: int = 1800) -> World:
    """Join the process group torchrun prepared (MASTER_ADDR/PORT, RANK, WORLD_SIZE)."""
    world = world_from_env()
    if world.distributed and not dist.is_initialized():
        pg = "nccl" if backend == "cuda" else "gloo"
        if backend == "cuda":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group(pg, timeout=timedelta(seconds=timeout_s))
    return world


def close_world(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def device_for_rank(backend: str, world: World) -> torch.device:
    return torch.device(f"cuda:{world.local_rank}") if backend == "cuda" else device_for(backend)


def wrap(module: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """DDP around the loss module when there is more than one process."""
    if not world.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)


def no_sync(module: torch.nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """Skip the gradient all-reduce on all but the last micro-batch of a step."""
    if sync or not hasattr(module, "no_sync"):
        return contextlib.nullcontext()
    return module.no_sync()


def all_sum(values: list[float], world: World, device: torch.device) -> list[float]:
    """Sum a few floats over all ranks (one collective); identity in a single process."""
    if not world.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


class StopRequest:
    """Remembers SIGTERM/SIGINT instead of dying, so the loop can checkpoint first.

    Dagster Pipes sends SIGINT when a run is cancelled; Kubernetes and torchrun send SIGTERM.
    The loop checks `signum` after every step (agreed across ranks) and stops at that boundary.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum

    def __enter__(self) -> StopRequest:
        for sig in self.SIGNALS:
            # Not the main thread (a Dagster in-process executor): no handler, no graceful stop.
            with contextlib.suppress(ValueError):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
