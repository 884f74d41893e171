"""LeNet's activation switch: relu is the tutorial's network, tanh the DP-SGD variant."""

from __future__ import annotations

import pytest
import torch

from tensorfab.errors import TensorfabError
from tensorfab.models import create_model


def _pair(activation: str) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = create_model("lenet", num_classes=10, activation=activation)
    return model.eval(), torch.randn(3, 1, 28, 28)


def test_relu_is_the_tutorial_network() -> None:
    model, x = _pair("relu")
    a = torch.max_pool2d(model.conv1(x), 2)
    a = torch.max_pool2d(model.conv2(a), 2)  # no activation after the convolutions
    expected = model.fc2(torch.relu(model.fc1(a.flatten(1))))
    assert torch.equal(model(x), expected)


def test_tanh_after_each_block_and_the_hidden_layer() -> None:
    model, x = _pair("tanh")
    a = torch.tanh(torch.max_pool2d(model.conv1(x), 2))
    a = torch.tanh(torch.max_pool2d(model.conv2(a), 2))
    expected = model.fc2(torch.tanh(model.fc1(a.flatten(1))))
    assert torch.allclose(model(x), expected, atol=1e-6)
    relu, _ = _pair("relu")
    assert not torch.allclose(model(x), relu(x))  # the same weights, another function
    assert sum(p.numel() for p in model.parameters()) == 431_080


def test_unknown_activation_is_one_line() -> None:
    expected = r"model\.args for 'lenet': activation 'gelu' is not one of relu, tanh"
    with pytest.raises(TensorfabError, match=expected):
        create_model("lenet", activation="gelu")


def _grads(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 3, 9])).backward()
    return [p.grad.clone() for p in model.parameters()]


def test_channels_last_gradient_reaches_the_pool_channels_last_with_the_same_values() -> None:
    from tensorfab.models.lenet import _gradient_like_input

    seen: list[torch.Tensor] = []
    for layout in (torch.channels_last, torch.contiguous_format):
        leaf = torch.randn(3, 50, 4, 4).to(memory_format=layout).requires_grad_()
        x = _gradient_like_input(leaf * 1.0)
        x.register_hook(lambda g: seen.append(g) or g)  # runs after the layout's hook
        (x.flatten(1) * torch.arange(800.0)).sum().backward()
    cl, nchw = seen
    assert cl.is_contiguous(memory_format=torch.channels_last) and not cl.is_contiguous()
    assert nchw.is_contiguous()  # an NCHW tensor (DP-SGD's layout) is left alone
    assert torch.equal(cl, nchw)  # the same gradient, only its layout differs
    model, x = _pair("relu")
    plain = _grads(model.train(), x)
    fast = _grads(model.to(memory_format=torch.channels_last), x)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, fast, strict=True))
