"""Data-parallel training under torchrun: one process per device, gradients averaged by DDP.

With no torchrun environment (or WORLD_SIZE=1) nothing here creates a process group, so the
single-process path is plain PyTorch.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as tdist
from torch import nn

from interfere.device import pick_device


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False  # init() created the process group, so cleanup() may destroy it

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, writes checkpoints and renders artifacts."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init(device: str | torch.device = "auto") -> Dist:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK and join the process group (NCCL on CUDA, else gloo)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device)
    if world_size <= 1:
        return Dist(device=dev)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)  # one GPU per process on each node
        torch.cuda.set_device(dev)
    owns = not tdist.is_initialized()
    if owns:
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs = {"device_id": dev} if dev.type == "cuda" else {}
        tdist.init_process_group(backend=backend, rank=rank, world_size=world_size, **kwargs)
    return Dist(rank=rank, world_size=world_size, local_rank=local_rank, device=dev, owns_group=owns)


def wrap(model: nn.Module, dist: Dist) -> nn.Module:
    """DDP around the model when there are several processes; the model itself otherwise."""
    if not dist.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [dist.device.index] if dist.device.type == "cuda" else None
    return DDP(model, device_ids=ids)


def maybe_no_sync(model: nn.Module, sync: bool):
    """Skip DDP's gradient all-reduce on accumulation micro-steps that are not the last."""
    if sync or not hasattr(model, "no_sync"):
        return contextlib.nullcontext()
    return model.no_sync()


def all_reduce_sum(t: torch.Tensor, dist: Dist) -> torch.Tensor:
    """Sum over ranks (in place, also returned); a no-op with one process."""
    if dist.enabled:
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
    return t


def all_reduce_mean(t: torch.Tensor, dist: Dist) -> torch.Tensor:
    if dist.enabled:
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
        t /= dist.world_size
    return t


def broadcast_object(obj, dist: Dist, src: int = 0):
    """Rank src's Python object on every rank (e.g. the run directory rank 0 created)."""
    if not dist.enabled:
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=src)
    return box[0]


def barrier(dist: Dist) -> None:
    if dist.enabled:
        tdist.barrier()


def cleanup(dist: Dist | None = None) -> None:
    """Leave the process group init() joined (one that the caller made itself is left alone)."""
    if dist is not None and not dist.owns_group:
        return
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()
