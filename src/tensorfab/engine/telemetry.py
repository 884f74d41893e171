"""Model FLOPs per sample and MFU, as ARCHITECTURE.md defines them.

FLOPs are counted by PyTorch's ``FlopCounterMode`` on one real forward pass (matmuls and
convolutions); a training step costs three forward passes' worth (forward + backward).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from tensorfab.hardware import datasheet_peak_tflops, measured_peak_tflops, mfu


@torch.no_grad()
def forward_flops_per_sample(forward: Callable[[], torch.Tensor], batch_size: int) -> float:
    """FLOPs of one forward pass per sample, counted on a real batch."""
    counter = FlopCounterMode(display=False)
    with counter:
        forward()
    return counter.get_total_flops() / max(1, batch_size)


def peak_info(device: torch.device, precision: str) -> dict[str, float | None]:
    """Measured (cached) and datasheet peaks for the precision in use; CPU: none measured."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {
        "peak_tflops": measured_peak_tflops(device, precision),
        "datasheet_peak_tflops": datasheet_peak_tflops(name, precision),
    }


def model_flops_utilization(
    train_flops_per_sample: float | None, samples_per_s: float, peak_tflops: float | None
) -> float | None:
    if not train_flops_per_sample:
        return None
    return mfu(train_flops_per_sample * samples_per_s, peak_tflops)
