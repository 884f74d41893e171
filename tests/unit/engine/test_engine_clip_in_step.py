"""Clipping folded into torch's fused AdamW (``fit.clipped_step``): the same parameters as
``clip_grad_norm_`` then ``step``, to float rounding when it clips and exactly when it does not."""

from __future__ import annotations

import pytest
import torch

from tensorfab.engine.fit import clipped_step


def _twins() -> tuple[list[torch.nn.Module], list[torch.optim.Optimizer]]:
    models, opts = [], []
    for _ in range(2):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Embedding(50, 8), torch.nn.Linear(8, 3))
        models.append(model)
        opts.append(torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.01, fused=True))
    return models, opts


def _grads(model: torch.nn.Module, step: int, size: float) -> None:
    g = torch.Generator().manual_seed(step)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=g) * size


@pytest.mark.parametrize(("size", "exact"), [(1.0, False), (1e-3, True)])
def test_clipped_step_is_clip_then_step(size: float, exact: bool) -> None:
    (plain, folded), (opt_plain, opt_folded) = _twins()
    for step in range(3):
        _grads(plain, step, size)
        _grads(folded, step, size)
        norm = torch.nn.utils.clip_grad_norm_(plain.parameters(), 1.0)
        assert (norm > 1.0) is not exact  # size 1.0 clips (norm ~ 20), 1e-3 does not
        opt_plain.step()
        clipped_step(opt_folded, list(folded.parameters()), 1.0)
    for a, b in zip(plain.parameters(), folded.parameters(), strict=True):
        if exact:
            assert torch.equal(a, b)
        else:
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
            assert torch.allclose(a.grad, b.grad)  # the kernel wrote the clipped gradients
    assert not hasattr(opt_folded, "grad_scale")  # a later step is not scaled
