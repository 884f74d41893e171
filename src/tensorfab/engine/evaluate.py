"""One evaluation pass: the model over a split's batches -> loss and task scores.

Used by the training loop every epoch and by ``tensorfab evaluate`` on a model package,
so the numbers a run reports and the numbers a later evaluation prints come from the
same code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tensorfab.engine.runtime import Runtime
from tensorfab.tasks import Task
from tensorfab.tasks.base import Batch


@dataclass
class EvalResult:
    scores: dict[str, Any]  # task scores plus "loss"
    n: int  # examples scored
    samples_per_s: float


@torch.no_grad()
def evaluate_batches(
    model: nn.Module,
    task: Task,
    batches: Iterable[Batch],
    runtime: Runtime,
    on_batch: Callable[[int], None] | None = None,
) -> EvalResult:
    """``on_batch(examples scored so far)`` after each batch: progress for long splits."""
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    loss_sum = torch.zeros((), device=runtime.device)
    outputs, n = [], 0
    for batch in batches:
        with runtime.autocast():
            logits = task.logits(model, batch)
        size = len(batch[0])
        loss_sum += task.loss(logits, batch).float() * size
        outputs.append(task.eval_step(logits, batch))
        n += size
        if on_batch is not None:
            on_batch(n)
    model.train(was_training)
    scores = task.eval_scores(outputs)
    scores["loss"] = loss_sum.item() / max(1, n)
    elapsed = time.perf_counter() - start
    return EvalResult(scores, n, n / max(elapsed, 1e-9))
