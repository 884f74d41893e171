"""What this node offers the scheduler: GPUs by UUID with memory, CPU cores, host memory.

Read from the hardware layer, or with ``--simulate-gpus N`` N virtual GPUs that jobs are
placed, pinned and accounted on as if they were there (their processes get an empty
``CUDA_VISIBLE_DEVICES`` and run on the CPU). Where NVML knows how the real GPUs are
connected, :func:`gpu_distance` turns its topology levels into distances for the policy, so
gang jobs get GPUs that are close; simulated GPUs have no topology.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tensorfab.hardware import gpus as hardware_gpus
from tensorfab.hardware import memory_bytes

# NVML's topology levels (nvmlGpuTopologyLevel_t) as distances: same board 0 ... across
# sockets 5. The policy only compares them.
TOPOLOGY_DISTANCE = {0: 0, 10: 1, 20: 2, 30: 3, 40: 4, 50: 5}


@dataclass(frozen=True)
class Gpu:
    id: str  # the name jobs and accounting use: "GPU-<uuid>", or "sim<N>"
    index: int
    name: str
    memory_bytes: int
    simulated: bool = False


@dataclass(frozen=True)
class Inventory:
    gpus: list[Gpu]
    cores: list[int]
    memory_bytes: int
    distance: dict[tuple[int, int], int] = field(default_factory=dict)  # by GPU index

    @property
    def simulated(self) -> bool:
        return any(g.simulated for g in self.gpus)

    def describe(self) -> dict[str, Any]:
        return {
            "gpus": [g.__dict__ for g in self.gpus],
            "cores": self.cores,
            "memory_bytes": self.memory_bytes,
            "simulated": self.simulated,
        }


def node_cores() -> list[int]:
    """The cores this process may run on (its affinity), which jobs are pinned within."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def discover(simulate_gpus: int | None = None) -> Inventory:
    """The node's inventory; ``simulate_gpus`` replaces the real GPUs by that many virtual ones."""
    memory = int(memory_bytes().get("total_bytes") or 0)
    if simulate_gpus is not None:
        sim = [Gpu(f"sim{i}", i, "simulated GPU", 80 * 2**30, True) for i in range(simulate_gpus)]
        return Inventory(sim, node_cores(), memory)
    found = [_real_gpu(info) for info in hardware_gpus()]
    return Inventory(found, node_cores(), memory, gpu_distance(found))


def _real_gpu(info: dict[str, Any]) -> Gpu:
    from tensorfab.hardware import cuda_uuid

    uuid = cuda_uuid(info["index"])
    gpu_id = f"GPU-{uuid}" if uuid else str(info["index"])
    return Gpu(gpu_id, info["index"], info["name"], int(info["total_memory_bytes"]))


def gpu_distance(
    found: list[Gpu], level: Callable[[Gpu, Gpu], int | None] | None = None
) -> dict[tuple[int, int], int]:
    """Pairwise distances of real GPUs from NVML's topology; empty where it is unknown.

    ``level`` reads NVML's common-ancestor level of two GPUs (a fake in tests).
    """
    real = [g for g in found if not g.simulated]
    if len(real) < 2:
        return {}
    read = level or _nvml_level
    out: dict[tuple[int, int], int] = {}
    for i, a in enumerate(real):
        for b in real[i + 1 :]:
            lvl = read(a, b)
            if lvl is None or lvl not in TOPOLOGY_DISTANCE:
                return {}  # a partial table would mislead the placement
            out[(a.index, b.index)] = out[(b.index, a.index)] = TOPOLOGY_DISTANCE[lvl]
    return out


def _nvml_level(a: Gpu, b: Gpu) -> int | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            ha = pynvml.nvmlDeviceGetHandleByIndex(a.index)
            hb = pynvml.nvmlDeviceGetHandleByIndex(b.index)
            return int(pynvml.nvmlDeviceGetTopologyCommonAncestor(ha, hb))
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # NVMLError_NotSupported, no driver: topology unknown
        return None
