"""Everything a training run holds while it runs, built once by ``setup``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tensorfab.engine.distributed import DistEnv
from tensorfab.engine.loggers import Loggers
from tensorfab.engine.progress import ProgressReporter
from tensorfab.engine.rundir import MetricsLog, RunDir
from tensorfab.engine.runtime import Runtime
from tensorfab.engine.state import TrainState
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
    train: Any  # TensorBatches or SequenceBatches: epoch(epoch, start_batch), len()
    eval: Any
    test: Any
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    log: MetricsLog
    progress: ProgressReporter
    package_meta: dict[str, Any]
    save_assets: Callable[[Path], None]  # files the package needs besides weights (tokenizer)
    # what the loop reports to (progress, and from train(): TensorBoard, MLflow)
    loggers: Loggers = field(default_factory=lambda: Loggers([]))
    flops_per_sample: float | None = None  # forward pass
    info: dict[str, Any] = field(default_factory=dict)  # data sizes, split, timings
    start: TrainState = field(default_factory=TrainState)  # fresh, or restored on --resume
    privacy: Any = None  # engine.privacy.Privacy when the run trains with DP-SGD
    average: Any = None  # engine.averaging.WeightAverage with train.average_last
    # called on every rank after each checkpoint (Ray Train reports it: engine/ray_train.py)
    on_checkpoint: Callable[[RunContext, TrainState], None] | None = None
