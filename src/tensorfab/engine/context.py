"""Everything a training run holds while it runs, built once by ``setup``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tensorfab.data.batching import TensorBatches
from tensorfab.engine.distributed import DistEnv
from tensorfab.engine.progress import ProgressReporter
from tensorfab.engine.rundir import MetricsLog, RunDir
from tensorfab.engine.runtime import Runtime
from tensorfab.spec import JobSpec
from tensorfab.tasks import Task


@dataclass
class RunContext:
    spec: JobSpec
    env: DistEnv
    runtime: Runtime
    run: RunDir
    model: nn.Module  # the plain module: saved, evaluated, packaged
    step_model: nn.Module  # what the loop calls: compiled and/or DDP-wrapped
    task: Task
    train: TensorBatches
    eval: TensorBatches
    test: TensorBatches
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    log: MetricsLog
    progress: ProgressReporter
    package_meta: dict[str, Any]
    tb: Any = None  # SummaryWriter on the main rank
    flops_per_sample: float | None = None  # forward pass
    info: dict[str, Any] = field(default_factory=dict)  # data sizes, split, timings
