"""Model FLOPs per sample and MFU, as ARCHITECTURE.md defines them.

The count is the task's (``Task.forward_flops``, real tokens only) over the whole training
split, so a text run's MFU is not that of its first, padded batch; a training step costs
three forward passes' worth (forward + backward).
"""

from __future__ import annotations

import torch
from torch import nn

from tensorfab.hardware import datasheet_peak_tflops, device_name, measured_peak_tflops, mfu
from tensorfab.tasks import Task, TokenCount
from tensorfab.tasks.base import TRAIN_FLOPS_FACTOR


@torch.no_grad()
def flops_per_sample(task: Task, model: nn.Module, count: TokenCount | None) -> float | None:
    """Forward FLOPs per training sample on real tokens; None when the split is unknown."""
    if count is None or count.samples < 1:
        return None
    return task.forward_flops(model, count) / count.samples


def peak_info(device: torch.device, precision: str) -> dict[str, float | None]:
    """Measured (cached; measured once on a miss) and datasheet peaks for the precision in
    use, on a GPU or a CPU (at the run's thread count); MPS has no measured peak."""
    return {
        "peak_tflops": measured_peak_tflops(device, precision),
        "datasheet_peak_tflops": datasheet_peak_tflops(device_name(device), precision),
    }


def model_flops_utilization(
    train_flops_per_sample: float | None, samples_per_s: float, peak_tflops: float | None
) -> float | None:
    if not train_flops_per_sample:
        return None
    return mfu(train_flops_per_sample * samples_per_s, peak_tflops)


def train_mfu(
    forward_flops: float, seconds: float, peak_tflops: float | None
) -> tuple[float, float | None]:
    """(achieved model TFLOP/s of training, MFU as a fraction or None without a peak)."""
    flops_per_s = TRAIN_FLOPS_FACTOR * forward_flops / seconds if seconds > 0 else 0.0
    return flops_per_s / 1e12, mfu(flops_per_s, peak_tflops)
