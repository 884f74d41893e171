"""What this machine has, as one JSON-ready dict: CPU, memory, OS, torch, and every GPU.

Read-only and safe everywhere: no GPU, no NVML, no /proc (macOS) all give fewer facts
(``None``), never an exception.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from tensorfab.hardware.device import CPUINFO, cpu_model, cuda_uuid, mps_available
from tensorfab.hardware.nvml import READING_KEYS, driver_version, gpu_readings
from tensorfab.hardware.peaks import datasheet_peak_tflops
from tensorfab.hardware.precision import precisions_for_capability, supported_precisions

MEMINFO = Path("/proc/meminfo")


def physical_cores() -> int | None:
    """Distinct (socket, core) pairs in /proc/cpuinfo; None where that file is missing."""
    try:
        lines = CPUINFO.read_text(errors="replace").splitlines()
    except OSError:
        return None
    cores: set[tuple[str, str]] = set()
    socket = ""
    for line in lines:
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "physical id":
            socket = value
        elif key == "core id":
            cores.add((socket, value))
    return len(cores) or None


def _meminfo_bytes() -> dict[str, int]:
    found: dict[str, int] = {}
    try:
        lines = MEMINFO.read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        key, _, value = line.partition(":")
        parts = value.split()
        if parts and parts[0].isdigit():
            found[key.strip()] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return found


def _sysconf(name: str) -> int | None:
    try:
        value = os.sysconf(name)
    except (AttributeError, ValueError, OSError):  # not on this OS
        return None
    return value if value > 0 else None


def memory_bytes() -> dict[str, int | None]:
    """Total and available RAM, from /proc/meminfo or else ``os.sysconf``."""
    info = _meminfo_bytes()
    if "MemTotal" in info:
        return {"total_bytes": info["MemTotal"], "available_bytes": info.get("MemAvailable")}
    page = _sysconf("SC_PAGE_SIZE")
    total, avail = _sysconf("SC_PHYS_PAGES"), _sysconf("SC_AVPHYS_PAGES")
    return {
        "total_bytes": page * total if page and total else None,
        "available_bytes": page * avail if page and avail else None,
    }


def _gpu_info(index: int, driver: str | None) -> dict[str, Any]:
    props = torch.cuda.get_device_properties(index)
    precisions = precisions_for_capability(props.major, props.minor)
    readings = gpu_readings(index, cuda_uuid(index)) or {}
    peaks = {p: datasheet_peak_tflops(props.name, p) for p in precisions}
    return {
        "index": index,
        "name": props.name,
        "total_memory_bytes": props.total_memory,
        "compute_capability": f"{props.major}.{props.minor}",
        "sm_count": props.multi_processor_count,
        "driver_version": driver,
        "cuda_runtime": torch.version.cuda,
        "precisions": precisions,
        "datasheet_peak_tflops": {p: v for p, v in peaks.items() if v is not None},
        **{key: readings.get(key) for key in READING_KEYS},
    }


def gpus() -> list[dict[str, Any]]:
    """One dict per visible CUDA GPU (empty without CUDA)."""
    if not torch.cuda.is_available():
        return []
    driver = driver_version()
    return [_gpu_info(i, driver) for i in range(torch.cuda.device_count())]


def collect_info() -> dict[str, Any]:
    """Everything ``tensorfab info`` shows, as plain JSON-serialisable data."""
    gpu_list = gpus()
    return {
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cpu": {
            "model": cpu_model(),
            "logical_cores": os.cpu_count(),
            "physical_cores": physical_cores(),
            "precisions": supported_precisions("cpu"),
        },
        "memory": memory_bytes(),
        "mps_available": mps_available(),
        "cuda_available": bool(gpu_list),
        "driver_version": gpu_list[0]["driver_version"] if gpu_list else driver_version(),
        "gpus": gpu_list,
    }
