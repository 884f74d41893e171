"""``create_optimizer`` and ``create_scheduler``: Adam/AdamW/SGD and warm-up + decay."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def create_optimizer(
    name: str,
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    fused: bool = False,
    lr_scales: dict[str, float] | None = None,
) -> torch.optim.Optimizer:
    """Build an optimizer; ``fused`` selects torch's single-kernel implementation (CUDA, CPU).

    ``lr_scales`` (parameter name -> factor of ``lr``, e.g. layer-wise decay) makes one
    parameter group per factor, the largest first (the learning rate the log shows).
    """
    params: Any = [p for p in model.parameters() if p.requires_grad]
    if lr_scales is not None:
        params = param_groups(model, lr, lr_scales)
    extra = {"fused": True} if fused else {}
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **extra)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **extra)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, **extra)
    raise ValueError(f"unknown optimizer {name!r}")


def param_groups(model: nn.Module, lr: float, scales: dict[str, float]) -> list[dict[str, Any]]:
    """One group per learning-rate factor (parameters in model order), largest factor first."""
    groups: dict[float, list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault(scales.get(name, 1.0), []).append(p)
    return [{"params": groups[s], "lr": lr * s} for s in sorted(groups, reverse=True)]


def lr_factor(step: int, *, total: int, warmup: int, kind: str) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def create_scheduler(
    optimizer: torch.optim.Optimizer, kind: str, *, total_steps: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_factor(s, total=total_steps, warmup=warmup_steps, kind=kind),
    )
