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
    # samples and seconds of each finished pass of train_epoch: in the checkpoint, so a
    # report written by a resumed process covers the training done before it, too
    train_samples: list[float] = field(default_factory=list)
    train_time_s: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        return cls(**d)

    def finished(self, epochs: int, max_steps: int | None, patience: int | None) -> str | None:
        """How training ended, if the loop has nothing left to do under these limits.

        The loop's own end conditions, in its order, read at an epoch boundary (a
        checkpoint taken mid-epoch always has that epoch's evaluation left to do): early
        stopping, ``max_steps``, all epochs. Raising a limit on ``--resume`` (more epochs,
        a larger ``max_steps`` or patience) makes a finished run unfinished again.
        """
        if self.batch_in_epoch:
            return None
        if patience is not None and self.bad_evals >= patience:
            return "early-stopped"
        if max_steps and self.global_step >= max_steps:
            return "max-steps"
        return "completed" if self.epoch >= epochs else None

    def improved(self, value: float, mode: str, min_delta: float) -> bool:
        if self.best_value is None:
            return True
        if mode == "max":
            return value > self.best_value + min_delta
        return value < self.best_value - min_delta
