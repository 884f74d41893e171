"""The contract between the engine (which knows no task) and each task."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn


@dataclass(frozen=True)
class Prediction:
    """Per-example predictions: class indices and their probabilities."""

    labels: torch.Tensor  # int64 [N]
    probs: torch.Tensor  # float32 [N, C]


class Task(Protocol):
    """What the engine calls; batches are tuples of tensors already on the device."""

    name: str
    classes: list[str]
    metric_names: tuple[str, ...]  # what ``scores`` returns (plus "loss"), for train.metric

    def loss(self, logits: torch.Tensor, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Mean loss of the batch (a 0-dim tensor, not synced to the host)."""
        ...

    def logits(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Raw model outputs for the batch, for evaluation and prediction."""
        ...

    def targets(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The batch's gold labels."""
        ...

    def predict(self, logits: torch.Tensor) -> Prediction:
        """Logits -> labels and probabilities."""
        ...

    def scores(self, targets: torch.Tensor, preds: torch.Tensor) -> dict[str, Any]:
        """Task metrics over a whole split."""
        ...

    def config(self) -> dict[str, Any]:
        """What the model package must record to rebuild this task."""
        ...
