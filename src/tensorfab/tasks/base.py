"""The contract between the engine (which knows no task) and each task.

A task turns a batch into logits and a loss, and per-batch outputs into the metrics of a
whole split. A :class:`Workload` is what a task makes of a data set before training: the
model's arguments, the batches of each split, and what the model package must record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

Batch = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class Prediction:
    """Per-example predictions: class indices and their probabilities."""

    labels: torch.Tensor  # int64 [N]
    probs: torch.Tensor  # float32 [N, C]


class Task(Protocol):
    """What the engine calls; batches are tuples of tensors already on the device."""

    name: str
    classes: list[str]  # label index -> name
    metric_names: tuple[str, ...]  # what ``eval_scores`` returns (plus "loss"), for train.metric

    def logits(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Raw model outputs for the batch."""
        ...

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Mean loss of the batch (a 0-dim tensor, not synced to the host)."""
        ...

    def eval_step(self, logits: torch.Tensor, batch: Batch) -> Any:
        """Host-side outputs of one evaluation batch (predictions with their targets)."""
        ...

    def eval_scores(self, outputs: list[Any]) -> dict[str, Any]:
        """Task metrics over a whole split from the outputs of all its batches."""
        ...

    def config(self) -> dict[str, Any]:
        """What the model package must record to rebuild this task."""
        ...


@dataclass(frozen=True)
class Placement:
    """Where and how batches are made: device, shuffling seed, DDP shard, residency."""

    device: torch.device
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    resident: str = "auto"  # auto | on | off: data kept on the device, batched there
    bucket: bool = False  # length-aware batching (sequences only)
    pack: bool = False  # pack training sequences into rows (token classification only)


@dataclass
class Workload:
    """A task applied to a data set: ready to build a model and iterate batches."""

    task: Task
    model_args: dict[str, Any]  # for create_model, from the data (classes, channels, ...)
    sizes: dict[str, int]  # examples per split: train, eval, test
    package_meta: dict[str, Any]  # labels, input, preprocessing, task_config
    make_batches: Callable[[str, int, bool, Placement], Any]  # (split, batch, train, where)
    save_assets: Callable[[Path], None] = field(default=lambda _d: None)
    notes: list[str] = field(default_factory=list)  # warnings for the person (truncation, ...)
