"""Multi-process training under ``torchrun``: rank discovery, process group, DDP wrap.

torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; without them the run is a single process and
nothing here does anything. gloo serves CPU runs (and the CPU tests), NCCL GPU runs (with
gloo beside it for host-side flags).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_env_from_environ() -> DistEnv:
    return DistEnv(
        rank=int(os.environ.get("RANK", 0)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
    )


def device_for_rank(device: str, env: DistEnv) -> str:
    """Under torchrun each process takes the GPU of its local rank."""
    if env.enabled and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{env.local_rank}"
    return device


def init_distributed(env: DistEnv, device: torch.device) -> None:
    if env.enabled and not dist.is_initialized():
        # NCCL for the gradients; gloo beside it for the host-side flag ``any_rank`` reduces
        # every step (NCCL reduces no CPU tensor, and a GPU flag would sync every step).
        backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size)


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, env: DistEnv, device: torch.device) -> nn.Module:
    if not env.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def any_rank(flag: bool, env: DistEnv) -> bool:
    """True when ``flag`` is set on any rank (so all ranks stop at the same step)."""
    if not env.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(env: DistEnv) -> None:
    if env.enabled:
        dist.barrier()
