"""Device and precision resolution: the rules and the one-line errors naming the field."""

from __future__ import annotations

import pytest
import torch

from tensorfab.errors import TensorfabError
from tensorfab.hardware import (
    precisions_for_capability,
    resolve_device,
    resolve_precision,
    supported_precisions,
)


@pytest.mark.parametrize(
    ("major", "minor", "expected"),
    [
        (7, 0, ["fp32", "fp16"]),
        (8, 0, ["fp32", "tf32", "bf16", "fp16"]),
        (8, 9, ["fp32", "tf32", "bf16", "fp16", "fp8"]),
        (9, 0, ["fp32", "tf32", "bf16", "fp16", "fp8"]),
    ],
)
def test_precisions_for_capability(major: int, minor: int, expected: list[str]) -> None:
    assert precisions_for_capability(major, minor) == expected


def test_cpu_and_mps_precisions() -> None:
    assert supported_precisions("cpu") == ["fp32", "bf16"]
    assert supported_precisions(torch.device("mps")) == ["fp32", "fp16"]


def test_resolve_cpu_and_auto_without_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")


def test_cuda_without_gpu_names_field_and_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(TensorfabError) as err:
        resolve_device("cuda")
    msg = str(err.value)
    assert msg.startswith("train.device: 'cuda' requested but no CUDA GPU is visible")
    assert f"torch {torch.__version__}" in msg
    assert msg.endswith("use auto or cpu")
    assert "\n" not in msg


def test_cuda_index_out_of_range_says_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(TensorfabError, match=r"train\.device: 'cuda:3' .* only 1 CUDA GPU is"):
        resolve_device("cuda:3")
    assert resolve_device("cuda:0") == torch.device("cuda", 0)


def test_mps_missing_and_bad_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(TensorfabError, match=r"train\.device: 'mps' requested but Apple MPS"):
        resolve_device("mps")
    with pytest.raises(TensorfabError, match=r"jobs\.device: must be auto, cpu, cuda"):
        resolve_device("tpu", field="jobs.device")


def test_resolve_precision_on_cpu() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(TensorfabError) as err:
        resolve_precision("tf32", cpu)
    msg = str(err.value)
    assert msg.startswith("train.precision: 'tf32' is not supported on cpu (")
    assert "it supports fp32, bf16; use precision: auto" in msg


def test_resolve_precision_on_old_and_new_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "Tesla V100-SXM2-16GB")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i: (7, 0))
    gpu = torch.device("cuda", 0)
    assert resolve_precision("auto", gpu) == "fp16"
    with pytest.raises(TensorfabError, match=r"'bf16' is not supported on cuda:0 \(Tesla V100"):
        resolve_precision("bf16", gpu)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i: (9, 0))
    assert resolve_precision("auto", gpu) == "bf16"
    assert resolve_precision("fp8", gpu) == "fp8"
