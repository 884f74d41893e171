"""A spec's profiles share one warmed model copy and optimizer across precisions: what
they record must be what a profiler made for that precision alone records."""

from __future__ import annotations

from pathlib import Path

import pytest

import tensorfab.advise.profile as profile_module
from tensorfab.advise import SpecProfiler
from tensorfab.spec import load_spec

SPEC = Path(__file__).resolve().parents[3] / "examples" / "digits-lenet.yaml"


def _profiler(monkeypatch: pytest.MonkeyPatch) -> SpecProfiler:
    monkeypatch.setattr(profile_module, "measure_or_none", lambda make: (None, "not measured here"))
    return SpecProfiler(load_spec(SPEC, ["data.batch_size=8"]))


def test_a_later_precision_records_what_a_fresh_profiler_records(monkeypatch) -> None:
    shared = _profiler(monkeypatch)
    first, later = shared("bf16"), shared("fp16")  # fp16 steps the model bf16 warmed
    shared._trained = None  # as before: a fresh model copy and optimizer for fp16 alone
    alone = shared("fp16")
    assert later.ops == alone.ops  # every op's FLOPs, bytes, kernels, dtype: as lines
    assert later.memory_curve == alone.memory_curve
    assert later.memory_start == alone.memory_start
    assert later.host_ops == alone.host_ops
    assert {op.dtype for op in later.ops} >= {"float16"}
    assert {op.dtype for op in first.ops} >= {"bfloat16"}
    assert first.ops != later.ops  # the precisions differ: not one profile reused
