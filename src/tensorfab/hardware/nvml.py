"""Live GPU readings (utilization, memory used, power, energy) and the driver version from NVML.

NVML comes from the ``pynvml`` module of ``nvidia-ml-py``, imported only when asked. No
library, no driver, or an unsupported query all mean "no reading" (``None``), never a crash:
this runs on laptops and CPU servers too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

READING_KEYS = ("utilization_pct", "memory_used_bytes", "power_w")


@contextmanager
def _session() -> Iterator[Any | None]:
    """Yield the initialised ``pynvml`` module, or None where NVML cannot start."""
    try:
        import pynvml
    except ImportError:
        yield None
        return
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...: no NVML here
        yield None
        return
    try:
        yield pynvml
    finally:
        with suppress(Exception):  # a failing shutdown leaves nothing for us to undo
            pynvml.nvmlShutdown()


def _try(read: Callable[[], Any]) -> Any | None:
    try:
        return read()
    except Exception:  # NVMLError_NotSupported and friends: this reading is absent
        return None


def driver_version() -> str | None:
    """The NVIDIA driver version, e.g. ``550.54.15``; None without NVML."""
    with _session() as nvml:
        if nvml is None:
            return None
        version = _try(nvml.nvmlSystemGetDriverVersion)
        return version.decode() if isinstance(version, bytes) else version


def _handle(nvml: Any, index: int, uuid: str | None) -> Any | None:
    # CUDA and NVML may number GPUs differently (CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER);
    # the UUID names the same board in both, the index is the fallback.
    if uuid:
        found = _try(lambda: nvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}"))
        if found is not None:
            return found
    return _try(lambda: nvml.nvmlDeviceGetHandleByIndex(index))


@contextmanager
def _device(index: int, uuid: str | None) -> Iterator[tuple[Any, Any] | None]:
    """NVML and the handle of one GPU for the block, or None when either is missing."""
    with _session() as nvml:
        handle = None if nvml is None else _handle(nvml, index, uuid)
        yield None if handle is None else (nvml, handle)


def gpu_readings(index: int, uuid: str | None = None) -> dict[str, float | int | None] | None:
    """Utilization %, memory used (bytes) and power (W) of one GPU; None without NVML."""
    with _device(index, uuid) as found:
        if found is None:
            return None
        nvml, handle = found
        power_mw = _try(lambda: nvml.nvmlDeviceGetPowerUsage(handle))
        return {
            "utilization_pct": _try(lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
            "memory_used_bytes": _try(lambda: nvml.nvmlDeviceGetMemoryInfo(handle).used),
            "power_w": None if power_mw is None else power_mw / 1000.0,
        }


def energy_mj(index: int, uuid: str | None = None) -> int | None:
    """The GPU's energy counter in millijoules since the driver loaded; None where unsupported.

    NVML counts it on Volta and newer boards: the difference of two readings is the energy
    a block of work used, exactly, where sampling power every few ms only estimates it.
    """
    with _device(index, uuid) as found:
        if found is None:
            return None
        nvml, handle = found
        value = _try(lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        return int(value) if value is not None else None
