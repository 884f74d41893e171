"""onnxruntime execution providers chosen by device, with GPU providers present or absent.

The choice is a pure function of the installed providers, so these tests simulate a CUDA
or TensorRT build by patching ``onnxruntime.get_available_providers``; no GPU session is
ever created.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tensorfab.errors import TensorfabError
from tensorfab.optimize import runtime
from tensorfab.optimize.runtime import onnx_providers, provider_notes

ort = pytest.importorskip("onnxruntime", reason="onnxruntime (the deploy extra) is not installed")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TRT = "TensorrtExecutionProvider"


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Pretend onnxruntime was built with the given providers."""

    def install(*names: str) -> None:
        monkeypatch.setattr(ort, "get_available_providers", lambda: [*names])

    return install


@pytest.mark.parametrize(
    ("available", "device", "expected"),
    [
        ((TRT, CUDA, CPU), "cuda", [TRT, CUDA, CPU]),
        ((CUDA, TRT, CPU), "cuda:1", [TRT, CUDA, CPU]),  # best first, whatever the order given
        ((CUDA, CPU), "cuda", [CUDA, CPU]),
        (("AzureExecutionProvider", CPU), "cuda", [CPU]),
        ((TRT, CUDA, CPU), "cpu", [CPU]),
        ((TRT, CUDA, CPU), "auto", [TRT, CUDA, CPU]),
        ((CUDA, CPU), "auto", [CUDA, CPU]),
        (("AzureExecutionProvider", CPU), "auto", [CPU]),
    ],
)
def test_providers_follow_device_and_what_is_installed(
    installed: Any, available: tuple[str, ...], device: str, expected: list[str]
) -> None:
    installed(*available)
    assert onnx_providers(device) == expected


def test_cuda_without_gpu_provider_falls_back_with_a_note(installed: Any) -> None:
    installed("AzureExecutionProvider", CPU)
    chosen = onnx_providers("cuda")
    assert chosen == [CPU]
    (note,) = provider_notes("cuda", chosen)
    assert "'cuda' asked" in note and "no GPU provider" in note and "onnxruntime-gpu" in note
    assert provider_notes("cuda", [CUDA, CPU]) == []
    assert provider_notes("cpu", [CPU]) == []
    assert provider_notes("auto", [CPU]) == []  # auto promised nothing


def test_unknown_device_is_one_clear_error() -> None:
    with pytest.raises(TensorfabError, match=r"device 'tpu': choose auto, cpu, cuda or cuda:N"):
        onnx_providers("tpu", [CPU])


def test_session_gets_gpu_index_and_reports_the_fallback(
    installed: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """onnx_session passes the chosen list (with device_id) to onnxruntime; the runtime
    built on it runs on CPU and says why when the GPU providers did not come up."""
    installed(TRT, CUDA, CPU)
    seen: dict[str, Any] = {}

    class FakeSession:
        def __init__(self, path: str, options: Any, providers: list[Any]) -> None:
            seen["providers"] = providers

        def get_providers(self) -> list[str]:
            return [CPU]  # as onnxruntime does when the CUDA libraries fail to load

    monkeypatch.setattr(ort, "InferenceSession", FakeSession)
    runtime.onnx_session(tmp_path / "model.onnx", "cuda:1")
    assert seen["providers"] == [(TRT, {"device_id": 1}), (CUDA, {"device_id": 1}), CPU]

    (tmp_path / "model.onnx").write_bytes(b"")
    meta = {"format_version": 1, "task": "token-classification", "model": {"name": "bert-tiny"},
            "labels": ["O"], "input": {"kind": "text"}}  # fmt: skip
    (tmp_path / "tensorfab.json").write_text(json.dumps(meta))
    with pytest.warns(RuntimeWarning, match="no GPU provider"):
        loaded = runtime.load_runtime(tmp_path, "onnxruntime", "cuda")
    assert loaded.device == "cpu" and loaded.providers == (CPU,)
    assert len(loaded.notes) == 1 and "running on CPU" in loaded.notes[0]
    assert loaded.describe()["notes"] == list(loaded.notes)
