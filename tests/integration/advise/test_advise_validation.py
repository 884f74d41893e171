"""Validation (never calibration): predictions against measured runs.

The H100 figures of issue 19 (``tests/fixtures/advise/h100-2026-11-23.json``) and this CPU's
own runs (``cpu-2026-11-30.json``, measured once by ``benchmarks/advise_validate_cpu.py``).
The model's constants were set before these were compared (``advise/constants.yaml``);
where a target is missed, the test asserts what does hold and the miss is reported in
docs/advise.md with its size, not hidden.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

from tensorfab.advise import SpecProfiler, advise
from tensorfab.advise.model import cpu_from_calibration, gpu_device, step_time
from tensorfab.advise.profile import Profile
from tensorfab.advise.workloads import profile_named
from tensorfab.hardware import gpu_by_id
from tensorfab.spec import load_spec

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "advise"
H100 = json.loads((FIXTURES / "h100-2026-11-23.json").read_text())
RUNS = {r["id"]: r for r in H100["runs"]}
CPU_RUNS = json.loads((FIXTURES / "cpu-2026-11-30.json").read_text())["runs"]
MINILM = REPO / "examples" / "conll2003-minilm.yaml"
CALIBRATION = json.loads(
    (REPO / "benchmarks/results/cpu-2026-11-30-advise-calibrate.json").read_text()
)


@cache
def _profile(workload: str, seq_len: int, precision: str) -> Profile:
    return profile_named(workload, 1, seq_len, precision)


def _measured_ms(run: dict) -> float:
    if "step_ms" in run:
        return run["step_ms"]
    return run["batch"] / run["samples_per_s"] * 1e3


def _h100_ms(run_id: str) -> tuple[float, str]:
    run = RUNS[run_id]
    profile = _profile(run["workload"], run.get("seq_len", 0), run["precision"])
    device = gpu_device(gpu_by_id(H100["gpu"]))
    t = step_time(profile.with_batch(run["batch"]), device, run["precision"])
    return t.step_s * 1e3, t.bound


def test_h100_bert_inference_compute_bound_within_25_percent_host_bound_named() -> None:
    """bert-base fp32 at batch 64 is compute-bound: the roofline within 25 % (0.91). At
    batch 1 it is host-bound: the step's own host time, measured on the meta device, + 5 us
    per launch (1.01 in the validation run, docs/advise.md). That host time is measured on
    this shared CPU as the test runs, and moves with the machine's load (10-21 ms for this
    step within minutes at load 6-7): asserted here within a factor of 3, not 25 %."""
    ms, bound = _h100_ms("bert-infer-b64-fp32")
    assert bound == "compute"
    assert ms == pytest.approx(_measured_ms(RUNS["bert-infer-b64-fp32"]), rel=0.25)
    ms, bound = _h100_ms("bert-infer-b1-fp32")
    assert bound == "launch overhead"
    assert 1 / 3 < ms / _measured_ms(RUNS["bert-infer-b1-fp32"]) < 3


def test_h100_lenet_is_launch_bound_within_a_factor_of_four() -> None:
    """Target MISSED for LeNet in three of four validation runs (fp32: 0.60-0.68 in run A,
    0.91-1.02 in B, 0.41-0.46 in C, 0.37-0.42 in D, docs/advise.md): 79 ops take 2.44 ms
    on the H100's host; this CPU's meta step and 5 us per launch give 1.0-2.5 ms (cuDNN's
    own host work per convolution is not on the meta device). What holds: launch overhead
    is the bound,
    within a factor of 4 (the host time is measured as the test runs, on a shared CPU:
    0.37 in one run at load 9, 2026-11-30)."""
    for run_id in ("lenet-b64-fp32", "lenet-b512-fp32"):
        ms, bound = _h100_ms(run_id)
        measured = _measured_ms(RUNS[run_id])
        assert bound == "launch overhead", run_id
        assert 1 / 4 < ms / measured < 2.5, run_id


def test_h100_lenet_trends_follow_the_measurements() -> None:
    """Measured: batch 512 costs about as much per step as 64 (2.75 vs 2.44 ms), and bf16
    autocast is slower than fp32 (more kernels: the casts). The model agrees on both."""
    b64, _ = _h100_ms("lenet-b64-fp32")
    b512, _ = _h100_ms("lenet-b512-fp32")
    bf16, _ = _h100_ms("lenet-b64-bf16")
    assert 0.95 <= b512 / b64 < 1.3
    assert bf16 > b64


@cache
def _minilm() -> SpecProfiler:
    return SpecProfiler(load_spec(MINILM))


def test_h100_minilm_ner_run_is_launch_bound_near_the_measurement() -> None:
    """HF Trainer took 60 s for 3 epochs (bf16 autocast, batch 16); the model said 62 s in
    the validation run (1.03, docs/advise.md), launch-bound: short CoNLL sentences, the GPU
    waits for the host (the engine's step stands in for the Trainer's). The host time is
    measured as the test runs, on whatever CPU runs it (77 s under heavier load; 35 s,
    0.58, on session 15's faster Intel Xeon, whose meta step took 4 instead of 6 ms per
    hundred ops): within a factor of 3 here, as for bert-base at batch 1."""
    result = advise(_minilm(), "bf16", [gpu_by_id("h100-sxm")])
    row = result.gpus[0]
    run = RUNS["minilm-ner-hf-trainer"]
    assert row["bound"] == "launch overhead"
    assert 1 / 3 < row["run_s"] / run["run_s"] < 3


def _cpu_ms(profile: Profile, batch: int) -> float:
    t = step_time(profile.with_batch(batch), cpu_from_calibration(CALIBRATION), "fp32")
    return t.step_s * 1e3


def _cpu_cases() -> dict[str, tuple[Profile, int]]:
    lenet = _profile("lenet-train", 0, "fp32")
    return {
        "lenet-train-b64-fp32": (lenet, 64),
        "lenet-train-b512-fp32": (lenet, 512),
        "bert-base-infer-b1-s128-fp32": (_profile("bert-base-infer", 128, "fp32"), 1),
        "minilm-ner-b16-fp32": (_minilm()("fp32"), 16),
    }


@cache
def cpu_comparison() -> dict[str, dict[str, float]]:
    """Predicted over measured step time and step memory, per CPU run."""
    out = {}
    for run_id, (profile, batch) in _cpu_cases().items():
        measured = CPU_RUNS[run_id]
        step_memory = profile.memory_at(batch) - (
            profile.memory_start[0] + profile.memory_start[1] * batch
        )
        out[run_id] = {
            "time": _cpu_ms(profile, batch) / measured["min_ms"],
            "memory": step_memory / max(measured["peak_rss_above_start_bytes"], 1),
        }
    return out


def test_cpu_step_memory_within_10_percent_of_the_measured_peak() -> None:
    """Target met for all four runs; LeNet batch 64 at the edge (1.09 with the median of 5
    steps' peak RSS, 9.0 MB; one step's read 8.8-9.1 MB, 1.08-1.11)."""
    for run_id, ratios in cpu_comparison().items():
        assert ratios["memory"] == pytest.approx(1.0, abs=0.10), run_id


def test_cpu_step_times_within_25_percent() -> None:
    """Target met for all four on this CPU (an Intel Xeon), measured with its calibration
    back to back (run E, session 16, docs/advise.md): LeNet 1.01 and 0.85 at batch 64 and
    512, bert-base inference 0.97, minilm NER 1.03, since products of two matrices are
    priced by their shape in a measured grid, convolutions by memory format, kernel,
    channel alignment, image size and bytes moved, and memory-bound ops at the bandwidth
    of their size and class (run D: one peak, one depth curve, one bandwidth: 0.64-0.76).
    The host part (1-17 ms of 23-231) is measured as the test runs."""
    for run_id, ratios in cpu_comparison().items():
        assert ratios["time"] == pytest.approx(1.0, abs=0.25), run_id
