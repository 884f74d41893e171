"""``train.precision: auto`` on a CPU: bf16 autocast where it pays, measured, not assumed.

A CPU trains in bf16 (autocast; fp32 master weights and optimizer state, as on a GPU) when
both hold: the cached matmul peak in bf16 is at least ``PEAK_RATIO`` x the fp32 one (the chip
has bf16 units: AVX-512 BF16, AMX), and a short probe of the actual model (forward and
backward on one real training batch, fp32 and bf16 steps interleaved, the median CPU time
of ``PROBE_STEPS`` each after two warm-ups) is at least ``PROBE_RATIO`` x faster in bf16.

The choice is cached beside the peaks (``precision.json``: per device and thread count,
model, arguments and batch size), so a run started again chooses what the first did, and a
resumed run keeps what its checkpoint recorded: resuming never changes the arithmetic.
The report says which precision was chosen and why, with the numbers. The rule, the probe's
timing and the cache are ``hardware/autoprecision.py``'s, shared with the inference runtime.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from typing import Any

import torch

from tensorfab.engine.context import RunContext
from tensorfab.engine.runtime import Runtime
from tensorfab.hardware import peak_cache_key
from tensorfab.hardware.autoprecision import (
    PEAK_RATIO,
    PROBE_RATIO,
    PROBE_STEPS,
    PrecisionChoice,
    Probe,
    cached_choice,
    choose_cpu_precision,
    decide_cpu_precision,
    probe_steps,
)
from tensorfab.spec import JobSpec

PROBE_CANDIDATES = 32  # the probe's batch: the median-sized of the epoch's first batches

__all__ = [
    "PEAK_RATIO",
    "PROBE_RATIO",
    "PROBE_STEPS",
    "PrecisionChoice",
    "cached_choice",
    "choice_key",
    "choose_cpu_precision",
    "choose_precision",
    "decide_cpu_precision",
    "probe_steps",
    "typical_batch",
]


def typical_batch(batches: Iterable[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...] | None:
    """The batch of median size (elements of its first tensor: rows x tokens for text).

    Length bucketing makes the first batch of an epoch any length: a batch of 5-token
    sentences times casts and launches rather than matmuls (minilm NER's probe chose fp32
    while a 16 x 24-token step runs 1.5x faster in bf16: one thread, 2026-11-30)."""
    seen = sorted(batches, key=lambda b: b[0].numel())
    return seen[(len(seen) - 1) // 2] if seen else None


def choice_key(device: torch.device, spec: JobSpec) -> str:
    """Device, threads and torch (the peak's key), then what the probe ran."""
    shape = json.dumps(spec.model.args, sort_keys=True, default=str)
    data = f"{spec.data.format} batch {spec.data.batch_size}"
    # older choices (a first-batch probe; wall time) are not read back: probed again
    probe = f"probe: median of {PROBE_CANDIDATES} batches, cpu time"
    return f"{peak_cache_key(device)} | {spec.model.name} {shape} | {data} | {probe}"


def _probe(ctx: RunContext) -> Probe | None:
    """Timed forward + backward of the plain model on a typical training batch; leaves no
    trace (gradients dropped, buffers and the CPU random state restored, so a run that
    probes trains exactly as one that finds the choice cached). None for a distributed or
    DP-SGD run, whose wrappers must see only real steps."""
    if ctx.env.world_size > 1 or ctx.privacy is not None:
        return None
    if next(iter(ctx.train.epoch(0)), None) is None:  # one batch made: an empty epoch
        return None

    def run() -> dict[str, float]:  # only on a cache miss: the batches are made here
        rng = torch.get_rng_state()
        buffers = [b.detach().clone() for b in ctx.model.buffers()]  # BatchNorm statistics
        batch = typical_batch(itertools.islice(ctx.train.epoch(0), PROBE_CANDIDATES))

        def step(precision: str) -> None:
            with Runtime(ctx.runtime.device, precision).autocast():
                logits = ctx.task.logits(ctx.model, batch)
            ctx.task.loss(logits, batch).backward()

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
