"""The mutable progress of a training run, saved in every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TrainState:
    epoch: int = 0  # the epoch in progress (0-based)
    batch_in_epoch: int = 0  # next micro-batch of that epoch
    global_step: int = 0  # optimizer steps taken
    epoch_loss_sum: float = 0.0  # train loss summed over the epoch's logged batches
    epoch_batches: int = 0
    best_value: float | None = None
    best_epoch: int | None = None
    bad_evals: int = 0  # evaluations since the last improvement (early stopping)
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        return cls(**d)

    def improved(self, value: float, mode: str, min_delta: float) -> bool:
        if self.best_value is None:
            return True
        if mode == "max":
            return value > self.best_value + min_delta
        return value < self.best_value - min_delta
