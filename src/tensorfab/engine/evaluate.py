"""One evaluation pass: the model over a split's batches -> loss, predictions, task scores.

Used by the training loop every epoch and by ``tensorfab evaluate`` on a model package,
so the numbers a run reports and the numbers a later evaluation prints come from the
same code.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tensorfab.data.batching import Batch
from tensorfab.engine.runtime import Runtime
from tensorfab.tasks import Task


@dataclass
class EvalResult:
    scores: dict[str, Any]  # task scores plus "loss"
    preds: torch.Tensor
    probs: torch.Tensor
    samples_per_s: float


@torch.no_grad()
def evaluate_batches(
    model: nn.Module, task: Task, batches: Iterable[Batch], runtime: Runtime
) -> EvalResult:
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    loss_sum = torch.zeros((), device=runtime.device)
    preds, probs, targets, n = [], [], [], 0
    for batch in batches:
        with runtime.autocast():
            logits = task.logits(model, batch)
        size = len(task.targets(batch))
        loss_sum += task.loss(logits, batch) * size
        p = task.predict(logits)
        preds.append(p.labels)
        probs.append(p.probs)
        targets.append(task.targets(batch))
        n += size
    model.train(was_training)
    all_preds = torch.cat(preds).cpu()
    scores = task.scores(torch.cat(targets).cpu(), all_preds)
    scores["loss"] = loss_sum.item() / max(1, n)
    elapsed = time.perf_counter() - start
    return EvalResult(scores, all_preds, torch.cat(probs).cpu(), n / max(elapsed, 1e-9))
