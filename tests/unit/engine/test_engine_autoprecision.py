"""``precision: auto`` on a CPU: the peak and probe rule, the probe's timing, the choice cache."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tensorfab.engine import autoprecision
from tensorfab.engine.autoprecision import (
    PrecisionChoice,
    cached_choice,
    decide_cpu_precision,
    probe_steps,
)


def _never() -> dict[str, float]:
    raise AssertionError("the peaks rule bf16 out: no probe")


def test_no_peaks_means_fp32() -> None:
    choice = decide_cpu_precision({"fp32": 0.144, "bf16": None}, _never)
    assert choice == PrecisionChoice("fp32", "no measured bf16 and fp32 matmul peaks on this CPU")


def test_a_cpu_without_bf16_units_is_not_probed() -> None:
    choice = decide_cpu_precision({"fp32": 0.2, "bf16": 0.28}, _never)
    assert choice.precision == "fp32"
    assert choice.reason == "bf16 matmul peak is 1.40x fp32 (< 1.5x): no bf16 units"
    assert choice.numbers["peak_ratio"] == pytest.approx(1.4)


def test_a_probe_below_the_threshold_keeps_fp32() -> None:
    choice = decide_cpu_precision(
        {"fp32": 0.144, "bf16": 0.374}, lambda: {"fp32": 0.110, "bf16": 0.100}
    )
    assert choice.precision == "fp32"
    assert choice.reason == (
        "bf16 matmul peak 2.60x fp32, but a bf16 step of this model is only 1.10x faster (< 1.2x)"
    )
    assert choice.numbers["probe_speedup"] == pytest.approx(1.1)


def test_a_faster_probe_picks_bf16_with_the_numbers() -> None:
    choice = decide_cpu_precision({"fp32": 0.1, "bf16": 0.2}, lambda: {"fp32": 0.3, "bf16": 0.2})
    assert choice.precision == "bf16"
    assert (
        choice.reason
        == "bf16 matmul peak 2.00x fp32, a bf16 step of this model 1.50x faster (>= 1.2x)"
    )
    assert choice.numbers == {
        "fp32_peak_tflops": 0.1,
        "bf16_peak_tflops": 0.2,
        "peak_ratio": 2.0,
        "probe_fp32_step_s": 0.3,
        "probe_bf16_step_s": 0.2,
        "probe_speedup": pytest.approx(1.5),
    }


def test_unprobed_run_keeps_fp32() -> None:
    choice = decide_cpu_precision({"fp32": 0.1, "bf16": 0.3}, None)
    assert choice.precision == "fp32" and "not probed" in choice.reason


def test_probe_interleaves_and_drops_the_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(100))
    monkeypatch.setattr(time, "process_time", lambda: float(next(clock)))
    calls: list[str] = []
    durations = {"fp32": 3.0, "bf16": 1.0}

    def step(precision: str) -> None:
        calls.append(precision)
        for _ in range(int(durations[precision]) - 1):  # each extra tick is a second
            next(clock)

    assert probe_steps(step, steps=2) == {"fp32": 3.0, "bf16": 1.0}
    assert calls == ["fp32", "bf16"] * 4  # two warm-up pairs, then two timed pairs


def test_choice_is_cached_per_key(tmp_path: Path) -> None:
    path = tmp_path / "precision.json"
    made: list[int] = []

    def decide() -> PrecisionChoice:
        made.append(1)
        return PrecisionChoice("bf16", "why", {"probe_speedup": 1.5})

    first = cached_choice("cpu | lenet", decide, path)
    again = cached_choice("cpu | lenet", decide, path)
    assert first == again == PrecisionChoice("bf16", "why", {"probe_speedup": 1.5})
    assert made == [1]
    assert json.loads(path.read_text())["cpu | lenet"]["precision"] == "bf16"
    path.write_text("{damaged")
    assert cached_choice("cpu | lenet", decide, path).precision == "bf16"
    assert made == [1, 1]  # a damaged cache is decided again


def test_the_probe_leaves_no_trace() -> None:
    from types import SimpleNamespace

    import torch

    from tensorfab.engine.runtime import Runtime

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Dropout())
    batch = (torch.randn(16, 4),)
    task = SimpleNamespace(
        logits=lambda m, b: m(b[0]), loss=lambda logits, b: logits.float().pow(2).mean()
    )
    ctx = SimpleNamespace(
        env=SimpleNamespace(world_size=1),
        privacy=None,
        train=SimpleNamespace(epoch=lambda e: iter([batch])),
        runtime=Runtime(torch.device("cpu"), "fp32"),
        task=task,
        model=model,
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    probe = autoprecision._probe(ctx)  # type: ignore[arg-type]
    assert probe is not None
    assert set(probe()) == {"fp32", "bf16"}
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm stats too
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)  # dropout's draws undone
    ctx.env.world_size = 2
    assert autoprecision._probe(ctx) is None  # DDP: never probed


def test_the_probe_times_the_median_sized_batch_not_the_first() -> None:
    import torch

    from tensorfab.engine.autoprecision import typical_batch

    batches = [(torch.zeros(16, t), torch.zeros(16)) for t in (5, 40, 20, 9, 31)]
    assert typical_batch(iter(batches))[0].shape == (16, 20)
    assert typical_batch(iter(batches[:2]))[0].shape == (16, 5)  # of two, the smaller
    assert typical_batch(iter([])) is None
