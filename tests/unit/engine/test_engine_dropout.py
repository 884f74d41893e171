"""BulkDropout: torch's dropout layer with masks drawn in bulk: the keep rate, the scale,
the gradient, eval mode, seeds, and the swap of a model's layers."""

from __future__ import annotations

import torch
from torch import nn

from tensorfab.engine.dropout import BulkDropout, bulk_dropout, keep_mask


def test_keep_rate_and_scale_are_torch_dropouts() -> None:
    torch.manual_seed(0)
    x = torch.ones(1000, 1000, dtype=torch.bfloat16)
    ours = BulkDropout(0.1)(x)
    theirs = nn.functional.dropout(x, 0.1, training=True)
    assert abs((ours != 0).float().mean().item() - 0.9) < 0.002  # 1M draws: sd 0.0003
    assert set(ours.unique().tolist()) == set(theirs.unique().tolist())  # {0, 1/0.9 in bf16}
    assert ours.dtype == torch.bfloat16


def test_gradient_is_the_mask_and_eval_is_identity() -> None:
    layer = BulkDropout(0.5)
    x = torch.randn(64, 33, requires_grad=True)  # odd count: the last 64-bit word is half read
    y = layer(x)
    y.sum().backward()
    kept = y != 0
    torch.testing.assert_close(x.grad, kept.float() * 2.0)
    torch.testing.assert_close(y[kept], x.detach()[kept] * 2.0)
    layer.eval()
    assert layer(x) is x


def test_masks_follow_the_seed() -> None:
    shape = torch.Size([7, 9])
    torch.manual_seed(3)
    a = keep_mask(shape, 0.3, torch.device("cpu"))
    torch.manual_seed(3)
    assert torch.equal(a, keep_mask(shape, 0.3, torch.device("cpu")))
    assert a.shape == shape and a.dtype == torch.bool


def test_swap_replaces_plain_dropout_layers_only() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.2), nn.Sequential(nn.Dropout(0.1)))
    model.append(nn.AlphaDropout(0.1))  # another kind of dropout: left alone
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert bulk_dropout(model) == 2
    assert isinstance(model[1], BulkDropout) and model[1].p == 0.2
    assert isinstance(model[2][0], BulkDropout) and model[2][0].p == 0.1
    assert type(model[3]) is nn.AlphaDropout
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
