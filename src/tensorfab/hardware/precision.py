"""Which numeric precisions a device can compute in, and the spec's ``precision`` resolved.

The rules follow the hardware: TF32 and BF16 tensor cores arrive with Ampere (sm 8.0),
FP8 with Ada/Hopper (sm 8.9); a CPU autocasts to BF16 only; Apple MPS does FP32 and FP16.
"""

from __future__ import annotations

import torch

from tensorfab.errors import TensorfabError
from tensorfab.hardware.device import cuda_index, describe_device

PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "fp8")

# The dtype tensors are computed in; tf32 is fp32 storage with TF32 tensor-core math.
PRECISION_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "tf32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "fp8": torch.float8_e4m3fn,
}


def precisions_for_capability(major: int, minor: int) -> list[str]:
    """Precisions a CUDA GPU of compute capability ``major.minor`` runs natively."""
    sm = (major, minor)
    found = ["fp32"]
    if sm >= (8, 0):
        found.append("tf32")
        found.append("bf16")
    if sm >= (5, 3):
        found.append("fp16")
    if sm >= (8, 9):
        found.append("fp8")
    return found


def supported_precisions(device: torch.device | str) -> list[str]:
    """Precisions ``device`` can train in; empty for a CUDA device that is not there."""
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return []
        return precisions_for_capability(*torch.cuda.get_device_capability(cuda_index(device)))
    if device.type == "mps":
        return ["fp32", "fp16"]
    return ["fp32", "bf16"]


def resolve_precision(requested: str, device: torch.device, field: str = "train.precision") -> str:
    """``auto`` becomes bf16 (or fp16 on pre-Ampere GPUs) on CUDA and fp32 elsewhere;
    an explicit precision the device cannot do is a user error naming the field."""
    supported = supported_precisions(device)
    if requested == "auto":
        if device.type != "cuda":
            return "fp32"
        return next((p for p in ("bf16", "fp16") if p in supported), "fp32")
    if requested not in PRECISIONS:
        raise TensorfabError(
            f"{field}: must be auto or one of {', '.join(PRECISIONS)}, not {requested!r}"
        )
    if requested not in supported:
        raise TensorfabError(
            f"{field}: {requested!r} is not supported on {describe_device(device)};"
            f" it supports {', '.join(supported) or 'nothing'}; use precision: auto"
        )
    return requested
