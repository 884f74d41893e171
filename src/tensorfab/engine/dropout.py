"""Dropout whose random mask is drawn 32 bits at a time: the same layer, cheaper on a CPU.

torch's CPU dropout draws one random number per element (``bernoulli_``: minilm NER's 14
dropout layers took 1.5 ms each for a 16 x 30 x 384 bf16 activation, one thread).
:class:`BulkDropout` draws 64-bit words and reads each as two 32-bit numbers, an element
kept when its number is at least ``p * 2**32`` (kept with probability 1 - p to 2**-32),
scaled by 1 / (1 - p) as torch's dropout scales it: 0.9 ms for the same activation. The
masks come from torch's default generator, so seeds and checkpoints' RNG states fix them
as before (the masks themselves differ from ``bernoulli_``'s). :func:`bulk_dropout` swaps
a model's ``nn.Dropout`` layers for it: no weights change, so checkpoints and packages
are the same; a layer whose ``p`` another op reads (attention's dropout inside SDPA) keeps
working, as the attribute is kept.
"""

from __future__ import annotations

import torch
from torch import nn


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
    """A bool tensor of ``shape``, each element True with probability 1 - ``p``."""
    n = shape.numel()
    words = torch.empty((n + 1) // 2, dtype=torch.int64, device=device)
    halves = words.random_(-(2**63), None).view(torch.int32)[:n]  # uniform over int32
    threshold = round(p * 2**32) - 2**31  # P(half >= threshold) = 1 - p
    return (halves >= threshold).view(shape)


class BulkDropout(nn.Dropout):
    """``nn.Dropout`` with :func:`keep_mask`'s masks while training (module docstring)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or self.inplace or self.p == 1.0:
            return super().forward(input)
        noise = keep_mask(input.shape, self.p, input.device).to(input.dtype)
        return input * noise.mul_(1.0 / (1.0 - self.p))


def bulk_dropout(model: nn.Module) -> int:
    """Replace every plain ``nn.Dropout`` in ``model`` by a :class:`BulkDropout` of the
    same ``p``; returns how many were replaced."""
    swaps = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if type(child) is nn.Dropout
    ]
    for parent, name, child in swaps:
        setattr(parent, name, BulkDropout(child.p, child.inplace))
    return len(swaps)
