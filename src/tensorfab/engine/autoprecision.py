"""``train.precision: auto`` on a CPU: bf16 autocast where it pays, measured, not assumed.

A CPU trains in bf16 (autocast; fp32 master weights and optimizer state, as on a GPU) when
both hold: the cached matmul peak in bf16 is at least ``PEAK_RATIO`` x the fp32 one (the chip
has bf16 units: AVX-512 BF16, AMX), and a short probe of the actual model (forward and
backward on one real training batch, fp32 and bf16 steps interleaved, the median of
``PROBE_STEPS`` each after one warm-up) is at least ``PROBE_RATIO`` x faster in bf16.

The choice is cached beside the peaks (``precision.json``: per device and thread count,
model, arguments and batch size), so a run started again chooses what the first did, and a
resumed run keeps what its checkpoint recorded: resuming never changes the arithmetic.
The report says which precision was chosen and why, with the numbers.
"""

from __future__ import annotations

import itertools
import json
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from tensorfab.engine.context import RunContext
from tensorfab.engine.runtime import Runtime
from tensorfab.files import write_text_atomic
from tensorfab.hardware import default_cache_path, measured_peak_tflops, peak_cache_key
from tensorfab.spec import JobSpec

PEAK_RATIO = 1.5  # bf16 / fp32 matmul peak: the chip computes bf16 natively
PROBE_RATIO = 1.2  # fp32 / bf16 step time of the model itself
PROBE_STEPS = 3
PROBE_CANDIDATES = 32  # the probe's batch: the median-sized of the epoch's first batches

Probe = Callable[[], dict[str, float]]  # seconds per training step by precision


@dataclass(frozen=True)
class PrecisionChoice:
    """What ``auto`` became and why, with the numbers behind it (for the report)."""

    precision: str
    reason: str
    numbers: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide_cpu_precision(peaks: dict[str, float | None], probe: Probe | None) -> PrecisionChoice:
    """The pure rule: peaks first (no probe when they rule bf16 out), then the probe."""
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
        why = f"{peak}, but a bf16 step of this model is only {speedup:.2f}x faster"
        why += f" (< {PROBE_RATIO}x)"
        return PrecisionChoice("fp32", why, numbers)
    why = f"{peak}, a bf16 step of this model {speedup:.2f}x faster (>= {PROBE_RATIO}x)"
    return PrecisionChoice("bf16", why, numbers)


def probe_steps(step: Callable[[str], None], steps: int = PROBE_STEPS) -> dict[str, float]:
    """Median seconds of ``step(precision)`` for fp32 and bf16, interleaved so that a
    machine whose load changes meanwhile slows both alike; one untimed warm-up each."""
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for i in range(steps + 1):
        for precision, kept in times.items():
            t0 = time.perf_counter()
            step(precision)
            if i:
                kept.append(time.perf_counter() - t0)
    return {p: statistics.median(t) for p, t in times.items()}


def typical_batch(batches: Iterable[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...] | None:
    """The batch of median size (elements of its first tensor: rows x tokens for text).

    Length bucketing makes the first batch of an epoch any length: a batch of 5-token
    sentences times casts and launches rather than matmuls (minilm NER's probe chose fp32
    while a 16 x 24-token step runs 1.5x faster in bf16: one thread, 2026-11-30)."""
    seen = sorted(batches, key=lambda b: b[0].numel())
    return seen[(len(seen) - 1) // 2] if seen else None


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


def choice_key(device: torch.device, spec: JobSpec) -> str:
    """Device, threads and torch (the peak's key), then what the probe ran."""
    shape = json.dumps(spec.model.args, sort_keys=True, default=str)
    data = f"{spec.data.format} batch {spec.data.batch_size}"
    probe = f"probe: median of {PROBE_CANDIDATES} batches"  # choices of the first-batch probe
    return f"{peak_cache_key(device)} | {spec.model.name} {shape} | {data} | {probe}"


def choose_cpu_precision(device: torch.device, key: str, probe: Probe | None) -> PrecisionChoice:
    """``auto`` on a CPU: the cached choice, else the peaks (measured once) and the probe.
    A run that cannot be probed (``probe`` None) decides without the cache."""

    def decide() -> PrecisionChoice:
        peaks = {p: measured_peak_tflops(device, p) for p in ("fp32", "bf16")}
        return decide_cpu_precision(peaks, probe)

    return cached_choice(key, decide) if probe is not None else decide()


def _probe(ctx: RunContext) -> Probe | None:
    """Timed forward + backward of the plain model on a typical training batch; leaves no
    trace (gradients dropped, buffers and the CPU random state restored, so a run that
    probes trains exactly as one that finds the choice cached). None for a distributed or
    DP-SGD run, whose wrappers must see only real steps."""
    if ctx.env.world_size > 1 or ctx.privacy is not None:
        return None
    batch = typical_batch(itertools.islice(ctx.train.epoch(0), PROBE_CANDIDATES))
    if batch is None:
        return None

    def step(precision: str) -> None:
        with Runtime(ctx.runtime.device, precision).autocast():
            logits = ctx.task.logits(ctx.model, batch)
        ctx.task.loss(logits, batch).backward()

    def run() -> dict[str, float]:
        rng = torch.get_rng_state()
        buffers = [b.detach().clone() for b in ctx.model.buffers()]  # BatchNorm statistics
        try:
            return probe_steps(step)
        finally:
            ctx.model.zero_grad(set_to_none=True)
            torch.set_rng_state(rng)
            with torch.no_grad():
                for b, saved in zip(ctx.model.buffers(), buffers, strict=True):
                    b.copy_(saved)

    return run


def choose_precision(ctx: RunContext, saved: dict[str, Any] | None) -> None:
    """Settle ``auto`` on a CPU (a GPU's ``auto`` is the hardware layer's rule) and record
    why; a resumed run keeps its checkpoint's precision (fp32 for one from before this)."""
    runtime, requested = ctx.runtime, ctx.spec.train.precision
    if requested != "auto" or runtime.device.type != "cpu":
        why = "train.precision" if requested != "auto" else "auto on this device"
        runtime.precision_reason = {"precision": runtime.precision, "reason": why}
        return
    if saved is not None:
        kept = str(saved.get("precision", "fp32"))
        choice = PrecisionChoice(kept, "kept from the checkpoint: a resumed run does not change")
    else:
        key = choice_key(runtime.device, ctx.spec)
        choice = choose_cpu_precision(runtime.device, key, _probe(ctx))
    runtime.precision = choice.precision
    runtime.precision_reason = choice.to_dict()
