"""``bench micro`` says "skipped" for a precision the device lacks, instead of timing
nothing and printing ``0.0 s`` for it (issue 21)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch

from tensorfab.bench import micro


class Recorder:
    """A BenchProgress stand-in: which stages ran, which lines were logged."""

    def __init__(self) -> None:
        self.stages: list[str] = []
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)

    @contextmanager
    def stage(self, label: str, total: int) -> Iterator[Any]:
        self.stages.append(label)
        yield lambda: None


def test_unsupported_precisions_are_logged_as_skipped_and_not_timed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(micro, "supported_precisions", lambda device: ["fp32"])
    monkeypatch.setattr(micro, "measure_matmul_tflops", lambda *a, **k: 1.5)
    monkeypatch.setattr(micro, "measured_peak_tflops", lambda *a, **k: None)
    monkeypatch.setattr(micro, "bandwidth", lambda device, quick: {"host_memcpy": 1.0})
    shown = Recorder()
    result = micro.bench_micro(torch.device("cpu"), True, shown)  # type: ignore[arg-type]
    others = [p for p in micro.PRECISIONS if p != "fp32"]
    assert others  # the device lacks at least one precision tensorfab knows
    assert shown.stages == ["matmul fp32", "bandwidth"]
    assert shown.lines == [f"matmul {p}: skipped (not supported on cpu)" for p in others]
    assert result["matmul"]["fp32"]["tflops"] == 1.5
    assert all(
        result["matmul"][p] == {"tflops": None, "reason": "not supported on cpu"} for p in others
    )
