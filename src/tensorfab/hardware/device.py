"""Turn a spec's ``device`` string into a ``torch.device`` that exists, and name devices.

``auto`` picks the best device present (CUDA, then Apple ``mps``, then CPU); anything
else that is not there ends in one :class:`TensorfabError` line naming the spec field.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from tensorfab.errors import TensorfabError

CPUINFO = Path("/proc/cpuinfo")


def mps_available() -> bool:
    """Whether Apple's Metal backend can run tensors here (False on non-Apple builds)."""
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(name: str, field: str = "train.device") -> torch.device:
    """Map ``auto | cpu | cuda | cuda:N | mps`` to a device that is really present."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        return torch.device("mps") if mps_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not mps_available():
            raise TensorfabError(
                f"{field}: 'mps' requested but Apple MPS is not available on this machine;"
                " use auto or cpu"
            )
        return torch.device("mps")
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        return _resolve_cuda(name, field)
    raise TensorfabError(f"{field}: must be auto, cpu, cuda, cuda:N or mps, not {name!r}")


def _resolve_cuda(name: str, field: str) -> torch.device:
    if not torch.cuda.is_available():
        raise TensorfabError(
            f"{field}: {name!r} requested but no CUDA GPU is visible ({_torch_build()});"
            " use auto or cpu"
        )
    index = int(name[5:]) if ":" in name else 0
    count = torch.cuda.device_count()
    if index >= count:
        visible = "1 CUDA GPU is" if count == 1 else f"{count} CUDA GPUs are"
        raise TensorfabError(
            f"{field}: {name!r} requested but only {visible} visible"
            f" (cuda:0..cuda:{count - 1}); use a lower index or device: auto"
        )
    return torch.device("cuda", index)


def _torch_build() -> str:
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU build"
    return (
        f"torch {torch.__version__} is built for CUDA {torch.version.cuda} but finds no GPU;"
        " check nvidia-smi and CUDA_VISIBLE_DEVICES"
    )


def cuda_index(device: torch.device) -> int:
    """The GPU index of a CUDA device; a bare ``cuda`` means the current GPU."""
    return device.index if device.index is not None else torch.cuda.current_device()


def cuda_uuid(index: int) -> str | None:
    """The board's UUID as CUDA sees it, which names the same GPU to NVML whatever the
    numbering (``CUDA_VISIBLE_DEVICES``); None where torch does not expose it."""
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    return str(uuid) if uuid is not None else None


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        for line in CPUINFO.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: torch.device | str) -> str:
    """A human name for a device: the GPU's name, the CPU model, or ``Apple MPS``."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(cuda_index(device))
    if device.type == "mps":
        return "Apple MPS"
    return cpu_model()


def describe_device(device: torch.device | str) -> str:
    """``cuda:0 (NVIDIA H100 80GB HBM3, sm 9.0)``: the form messages and reports use."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        return f"{device} (no CUDA GPU visible)"
    if device.type == "cuda":
        index = cuda_index(device)
        major, minor = torch.cuda.get_device_capability(index)
        return f"cuda:{index} ({device_name(device)}, sm {major}.{minor})"
    return f"{device.type} ({device_name(device)})"
