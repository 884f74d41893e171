"""Settings of the PyTorch runtime: validation, variant names, device rules, forward wiring."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from tensorfab.errors import TensorfabError
from tensorfab.optimize.export import TORCH_VARIANTS
from tensorfab.optimize.runtime import TorchSettings, torch_forward, torch_unsupported


def test_export_variant_names_match_their_settings() -> None:
    assert {name: s.variant for name, s in TORCH_VARIANTS.items()} == {
        "torch-fp16": "torch-fp16",
        "torch-bf16": "torch-bf16",
        "torch-compile": "torch-compile",
        "torch-cudagraphs": "torch-cudagraphs",
    }
    assert TorchSettings(precision="bf16", cuda_graphs=True).variant == "torch-bf16-cudagraphs"
    assert TorchSettings().variant == "torch-fp32"


def test_settings_read_from_a_config_mapping() -> None:
    config = {"backend": "torch", "precision": "bf16", "compile": True, "max_batch_size": 8}
    assert TorchSettings.from_mapping(config, "c.yaml") == TorchSettings("bf16", True, False)
    assert TorchSettings.from_mapping({}, "c.yaml") == TorchSettings()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"precision": "int4"}, r"c\.yaml: precision 'int4'; choose from fp32, fp16, bf16"),
        ({"compile": "yes"}, r"c\.yaml: compile must be true or false, not 'yes'"),
        ({"cuda_graphs": 1}, r"c\.yaml: cuda_graphs must be true or false, not 1"),
    ],
)
def test_bad_settings_name_the_place(values: dict[str, Any], message: str) -> None:
    with pytest.raises(TensorfabError, match=message):
        TorchSettings.from_mapping(values, "c.yaml")


def test_gpu_only_settings_are_refused_on_cpu_with_the_variant_named() -> None:
    assert torch_unsupported(TORCH_VARIANTS["torch-fp16"], "cpu") == (
        "torch-fp16 needs a CUDA GPU (device is cpu)"
    )
    assert torch_unsupported(TORCH_VARIANTS["torch-cudagraphs"], "cpu") == (
        "torch-cudagraphs needs a CUDA GPU (device is cpu)"
    )
    assert torch_unsupported(TORCH_VARIANTS["torch-bf16"], "cpu") is None
    assert torch_unsupported(TORCH_VARIANTS["torch-compile"], "cpu") is None
    assert torch_unsupported(TORCH_VARIANTS["torch-fp16"], "cuda:0") is None
    both = TorchSettings(compile=True, cuda_graphs=True)
    assert "choose compile or cuda_graphs, not both" in str(torch_unsupported(both, "cuda:0"))


def _linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.LayerNorm(32), nn.Linear(32, 4)).eval()


@torch.no_grad()
def test_bf16_stores_weights_in_bf16_and_stays_close_to_fp32() -> None:
    x = torch.randn(5, 16)
    expected = _linear()(x)
    graph = _linear()
    out = torch_forward(graph, TorchSettings(precision="bf16"), torch.device("cpu"))(x)
    assert graph[0].weight.dtype == torch.bfloat16
    assert out.shape == expected.shape
    assert torch.allclose(out.float(), expected, atol=0.05)
    assert not torch.equal(out.float(), expected)  # it really ran in bf16


@torch.no_grad()
def test_compile_wraps_the_forward_with_dynamic_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def fake_compile(fn: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    x = torch.randn(3, 16)
    out = torch_forward(_linear(), TorchSettings(compile=True), torch.device("cpu"))(x)
    assert calls == [{"dynamic": True}]
    assert torch.allclose(out, _linear()(x))
