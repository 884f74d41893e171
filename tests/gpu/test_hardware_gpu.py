"""The hardware layer on a real CUDA GPU: peaks are measured, GPUs are described."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tensorfab.hardware import (
    collect_info,
    measure_matmul_tflops,
    measured_peak_tflops,
    resolve_device,
    resolve_precision,
)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_bf16_peak_measured_and_cached(tmp_path: Path) -> None:
    device = resolve_device("cuda")
    assert resolve_precision("auto", device) in ("bf16", "fp16")
    path = tmp_path / "peaks.json"
    peak = measured_peak_tflops(device, "bf16", path, measure=lambda d, p: _bf16(d))
    assert peak is not None and peak > 1.0
    assert measured_peak_tflops(device, "bf16", path, measure_if_missing=False) == peak


def _bf16(device: torch.device) -> float:
    return measure_matmul_tflops(device, "bf16", n=4096, iters=10)


def test_tf32_setting_restored() -> None:
    before = torch.backends.cuda.matmul.allow_tf32
    assert measure_matmul_tflops("cuda", "tf32", n=1024, iters=3) > 0
    assert torch.backends.cuda.matmul.allow_tf32 == before


def test_collect_info_lists_gpus() -> None:
    info = collect_info()
    assert len(info["gpus"]) >= 1
    gpu = info["gpus"][0]
    assert gpu["sm_count"] > 0
    assert gpu["total_memory_bytes"] > 0
    assert "fp32" in gpu["precisions"]
