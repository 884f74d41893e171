"""A run measured on a GPU corrects the model for that GPU (``--calibrate`` with a
``tensorfab bench train`` result).

The model's weakest part is what it cannot see from this CPU: how fast the GPU's own host
dispatches a step (host-bound runs: LeNet, short-sentence NER, batch-1 inference) and how
close the kernels come to the rooflines (compute- and memory-bound runs). A run measured
on that GPU answers the part that limited it. Each tensorfab result of the file is profiled
here as advise profiles a spec (its own engine spec, kept in the result), predicted on the
GPU the result names, and set beside its measured median step time:

* predicted host-bound: the host's time (dispatch, launches, making the batch) is scaled
  by measured / predicted;
* otherwise the device's time (rooflines and kernel latencies) is.

Several results of one kind give the median of their factors. The factors apply to that GPU
only, for every workload advised afterwards, and the answer's notes say where they came
from; other GPUs keep the model. A compiled or DP-SGD run (``bench train`` compiles on
CUDA by default) is left out with a note: the model has no such step. Every value read is
checked first (advise/calibration.py).
"""

from __future__ import annotations

import statistics
from typing import Any

from tensorfab.advise.advise import recorded_precision
from tensorfab.advise.calibration import Measured, device_gpu, number, train_results
from tensorfab.advise.model import gpu_device, step_time
from tensorfab.advise.profile import SpecProfiler
from tensorfab.errors import TensorfabError
from tensorfab.hardware import Gpu

HOST_BOUND = ("launch overhead", "host input")
NOT_MODELLED = (
    "compiled runs are not modelled; rerun bench train --compile off",
    "DP-SGD runs (train.privacy) are not modelled; rerun bench train without them",
)


def _skipped(m: Measured) -> str | None:
    """Why a result cannot correct the model (the model has no compiled or DP-SGD step)."""
    if m.spec.train.compile:
        return NOT_MODELLED[0]
    return NOT_MODELLED[1] if m.spec.train.privacy is not None else None


def _factor(m: Measured, gpu: Gpu, where: str) -> tuple[str, float, str]:
    """("host_scale" or "device_scale", measured / predicted, a note)."""
    try:  # the result's own spec: its data must be readable here too
        profile = SpecProfiler(m.spec)(recorded_precision(m.precision)).with_batch(m.batch)
    except TensorfabError as exc:
        raise TensorfabError(f"{where}: {m.label}: {exc}") from None
    t = step_time(profile, gpu_device(gpu), m.precision)
    host_bound = t.bound in HOST_BOUND
    part_s = t.dispatch_s + t.input_s if host_bound else t.device_s
    key = "host_scale" if host_bound else "device_scale"
    if part_s <= 0:
        raise TensorfabError(
            f"{where}: {m.label}: the model "
            f"predicts no {'host' if host_bound else 'device'} time to correct"
        )
    factor = number(m.seconds / part_s, f"{where}: {m.label}", f"measured / predicted {key}", key)
    note = (
        f"{gpu.id}: {'host' if host_bound else 'device'} time x{factor:.2f}, from "
        f"{m.workload} measured there ({m.seconds * 1e3:.2f} ms per "
        f"step at batch {m.batch}, {m.precision}; the model said {t.step_s * 1e3:.2f} ms, "
        f"{t.bound})"
    )
    return key, factor, note


def calibration_from_bench(data: dict[str, Any], where: str) -> dict[str, Any]:
    """The calibration object (``{"gpus": {id: {scales}}, "notes": [...]}``) that a bench
    train result measured on a catalogue GPU gives; every result is checked before any is
    profiled, and compiled or DP-SGD runs are left out with a note."""
    gpu = device_gpu(data.get("environment"), where)
    found: dict[str, list[float]] = {}
    notes, reasons = [], []
    for m in train_results(data, gpu, where):
        reason = _skipped(m)
        if reason:
            reasons.append(reason)
            notes.append(f"{gpu.id}: {m.workload} left out: {reason}")
            continue
        key, factor, note = _factor(m, gpu, where)
        found.setdefault(key, []).append(factor)
        notes.append(note)
    if not found:
        raise TensorfabError(f"{where}: no result left: {'; '.join(sorted(set(reasons)))}")
    scales = {key: statistics.median(values) for key, values in found.items()}
    return {"gpus": {gpu.id: scales}, "notes": notes}
