"""Data-parallel training under torchrun: one process per device, gradients averaged by DDP (the default)
or FSDP (`train.parallel=fsdp`: torch.distributed.fsdp.fully_shard, parameters, gradients and optimizer
state sharded over the processes).

With no torchrun environment (or WORLD_SIZE=1) nothing here creates a process group, so the
single-process path is plain PyTorch (train.parallel is then irrelevant).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as tdist
from torch import nn

from interfere.device import pick_device
from interfere.errors import ConfigError

PARALLEL = ("ddp", "fsdp")


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


def check_parallel(parallel: str, dist: Dist) -> str:
    """train.parallel validated for this device: "ddp" or "fsdp" (ConfigError naming the fix otherwise)."""
    parallel = str(parallel or "ddp").lower()
    if parallel not in PARALLEL:
        raise ConfigError(f"train.parallel={parallel!r}; choose ddp or fsdp")
    if parallel == "fsdp" and dist.enabled:
        try:
            from torch.distributed.fsdp import fully_shard  # noqa: F401 (torch >= 2.6)
        except ImportError:
            raise ConfigError(f"train.parallel=fsdp needs torch.distributed.fsdp.fully_shard (torch >= 2.6; this is "
                              f"torch {torch.__version__}); use train.parallel=ddp") from None
        if dist.device.type not in ("cuda", "cpu"):
            raise ConfigError(f"train.parallel=fsdp is not supported on {dist.device.type}; use train.parallel=ddp")
    return parallel


def wrap(model: nn.Module, dist: Dist, parallel: str = "ddp") -> nn.Module:
    """DDP around the model, or FSDP sharding it in place, when there are several processes; else the model.

    FSDP shards each transformer block (model.blocks) and then the rest of the model; the module stays the
    same object (fully_shard changes its class), so optimizers must be built after this call.
    """
    if not dist.enabled:
        return model
    if parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in getattr(model, "blocks", ()):
            fully_shard(block)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [dist.device.index] if dist.device.type == "cuda" else None
    return DDP(model, device_ids=ids)


def full_model_state(model: nn.Module, dist: Dist) -> dict | None:
    """The unsharded state dict of an FSDP model, on the CPU of rank 0 (None elsewhere); every rank must call."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return sd if dist.is_main else None


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, dist: Dist) -> dict | None:
    """The unsharded optimizer state of an FSDP model keyed by parameter name, on rank 0's CPU (None elsewhere)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    sd = get_optimizer_state_dict(model, optimizer,
                                  options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return sd if dist.is_main else None


def load_full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Shard a full, name-keyed optimizer state (every rank passes the same one) into an FSDP optimizer."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))


def local_value(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's full value (e.g. FSDP's replicated grad norm); any other tensor unchanged."""
    full = getattr(t, "full_tensor", None)
    return full() if callable(full) else t


@contextlib.contextmanager
def maybe_no_sync(model: nn.Module, sync: bool):
    """Skip the gradient all-reduce (DDP) or reduce-scatter (FSDP) on accumulation micro-steps but the last."""
    if sync:
        yield
    elif hasattr(model, "no_sync"):  # DDP
        with model.no_sync():
            yield
    elif hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


def all_reduce_sum(t: torch.Tensor, dist: Dist) -> torch.Tensor:
    """Sum over ranks (in place, also returned); a no-op with one process."""
    if dist.enabled:
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
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
