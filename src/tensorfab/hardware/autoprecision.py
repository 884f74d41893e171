"""``precision: auto`` on a CPU: the one rule, for training and inference alike.

A CPU computes in bf16 (autocast) when both hold: the cached matmul peak in bf16 is at
least ``PEAK_RATIO`` x the fp32 one (the chip has bf16 units: AVX-512 BF16, AMX), and a
short probe of the actual model (what the caller times: a training step, or an inference
forward; fp32 and bf16 interleaved, the median CPU time of ``PROBE_STEPS`` each after
``PROBE_WARM_UPS`` warm-ups)
is at least ``PROBE_RATIO`` x faster in bf16.

The choice is cached beside the peaks (``precision.json``, under a key the caller makes:
device and thread count, model, what was probed), so a process started again chooses what
the first did. The engine (``engine/autoprecision.py``: training) and ``optimize``
(``optimize/precision.py``: the inference runtime) each probe their own pass through here.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from tensorfab.files import write_text_atomic
from tensorfab.hardware.peaks import default_cache_path, measured_peak_tflops

PEAK_RATIO = 1.5  # bf16 / fp32 matmul peak: the chip computes bf16 natively
PROBE_RATIO = 1.2  # fp32 / bf16 time of the model's own pass
PROBE_STEPS = 5
PROBE_WARM_UPS = 2  # oneDNN makes a precision's primitives on its first passes

Probe = Callable[[], dict[str, float]]  # seconds per probed pass by precision


@dataclass(frozen=True)
class PrecisionChoice:
    """What ``auto`` became and why, with the numbers behind it (for the report)."""

    precision: str
    reason: str
    numbers: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide_cpu_precision(
    peaks: dict[str, float | None], probe: Probe | None, what: str = "step"
) -> PrecisionChoice:
    """The pure rule: peaks first (no probe when they rule bf16 out), then the probe.
    ``what`` names the probed pass in the reason ("step", "forward")."""
    fp32, bf16 = peaks.get("fp32"), peaks.get("bf16")
    if not fp32 or not bf16:
        return PrecisionChoice("fp32", "no measured bf16 and fp32 matmul peaks on this CPU")
    numbers: dict[str, float | None] = {
        "fp32_peak_tflops": fp32,
        "bf16_peak_tflops": bf16,
        "peak_ratio": bf16 / fp32,
    }
    if bf16 / fp32 < PEAK_RATIO:
        why = f"bf16 matmul peak is {bf16 / fp32:.2f}x fp32 (< {PEAK_RATIO}x): no bf16 units"
        return PrecisionChoice("fp32", why, numbers)
    if probe is None:
        return PrecisionChoice("fp32", "the model was not probed (distributed or DP-SGD run)")
    step_s = probe()
    speedup = step_s["fp32"] / step_s["bf16"]
    numbers.update(
        probe_fp32_step_s=step_s["fp32"], probe_bf16_step_s=step_s["bf16"], probe_speedup=speedup
    )
    peak = f"bf16 matmul peak {bf16 / fp32:.2f}x fp32"
    if speedup < PROBE_RATIO:
        why = f"{peak}, but a bf16 {what} of this model is only {speedup:.2f}x faster"
        why += f" (< {PROBE_RATIO}x)"
        return PrecisionChoice("fp32", why, numbers)
    why = f"{peak}, a bf16 {what} of this model {speedup:.2f}x faster (>= {PROBE_RATIO}x)"
    return PrecisionChoice("bf16", why, numbers)


def probe_steps(
    step: Callable[[str], None], steps: int = PROBE_STEPS, warm_ups: int = PROBE_WARM_UPS
) -> dict[str, float]:
    """Median CPU seconds of ``step(precision)`` for fp32 and bf16, interleaved, after
    ``warm_ups`` untimed passes each. CPU time (the process's, every thread), not wall
    time: on a shared machine a pass that is preempted loses wall time it did not use
    (LeNet's probe read 1.11x once with wall time, 1.41-1.63x in four other processes;
    with CPU time 1.53-1.59x in the same four, 2026-11-30)."""
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for i in range(steps + warm_ups):
        for precision, kept in times.items():
            t0 = time.process_time()
            step(precision)
            if i >= warm_ups:
                kept.append(time.process_time() - t0)
    return {p: statistics.median(t) for p, t in times.items()}


def choice_cache_path() -> Path:
    """``precision.json`` beside the peak cache."""
    return default_cache_path().parent / "precision.json"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):  # missing or damaged: probe again
        return {}
    return data if isinstance(data, dict) else {}


def cached_choice(
    key: str, decide: Callable[[], PrecisionChoice], path: Path | None = None
) -> PrecisionChoice:
    """The choice cached under ``key``, else ``decide()``'s, cached."""
    path = path or choice_cache_path()
    saved = _read(path).get(key)
    if isinstance(saved, dict) and saved.get("precision") in ("fp32", "bf16"):
        return PrecisionChoice(
            saved["precision"], str(saved.get("reason", "")), saved.get("numbers", {})
        )
    choice = decide()
    data = _read(path)  # re-read: another process may have written meanwhile
    data[key] = choice.to_dict()
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return choice


def choose_cpu_precision(
    device: torch.device, key: str, probe: Probe | None, what: str = "step"
) -> PrecisionChoice:
    """``auto`` on a CPU: the cached choice, else the peaks (measured once) and the probe.
    A pass that cannot be probed (``probe`` None) decides without the cache."""

    def decide() -> PrecisionChoice:
        peaks = {p: measured_peak_tflops(device, p) for p in ("fp32", "bf16")}
        return decide_cpu_precision(peaks, probe, what)

    return cached_choice(key, decide) if probe is not None else decide()
