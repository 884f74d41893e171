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
from; other GPUs keep the model.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from tensorfab.advise.model import gpu_device, step_time
from tensorfab.advise.profile import SpecProfiler
from tensorfab.errors import TensorfabError
from tensorfab.hardware import Gpu, find_gpu
from tensorfab.spec import parse_spec

HOST_BOUND = ("launch overhead", "host input")


def _gpu(data: dict[str, Any], where: str) -> Gpu:
    env = data.get("environment", {})
    name = str(env.get("device_name") or "")
    gpu = find_gpu(name) if env.get("device") != "cpu" else None
    if gpu is None:
        raise TensorfabError(
            f"{where}: environment.device_name {name!r} is not a GPU of the catalogue "
            "(a measured run corrects the GPU it ran on)"
        )
    return gpu


def _measured(result: dict[str, Any], where: str) -> tuple[Any, str, int, float]:
    """(spec, precision, batch, measured seconds per step) of one bench train result."""
    side = result.get("tensorfab") or {}
    try:
        median_ms = float(side["step_time_ms"]["median"])
        batch = int(result["batch_size"])
        if not (math.isfinite(median_ms) and median_ms > 0 and batch > 0):
            raise ValueError(f"step_time_ms.median {median_ms:g}, batch_size {batch}")
        spec = parse_spec(side["settings"]["spec"])
        return spec, str(side["precision"]), batch, median_ms / 1e3
    except (KeyError, TypeError, ValueError, TensorfabError) as exc:
        detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
        raise TensorfabError(
            f"{where}: result {result.get('workload', '?')!r} is not a tensorfab bench "
            f"train result ({detail})"
        ) from None


def _factor(result: dict[str, Any], gpu: Gpu, where: str) -> tuple[str, float, str]:
    """("host_scale" or "device_scale", measured / predicted, a note)."""
    spec, precision, batch, measured_s = _measured(result, where)
    recorded = precision if precision in ("bf16", "fp16") else "fp32"
    try:  # the result's own spec: its data must be readable here too
        profile = SpecProfiler(spec)(recorded).with_batch(batch)
    except TensorfabError as exc:
        raise TensorfabError(f"{where}: result {result.get('workload', '?')!r}: {exc}") from None
    t = step_time(profile, gpu_device(gpu), precision)
    host_bound = t.bound in HOST_BOUND
    part_s = t.dispatch_s + t.input_s if host_bound else t.device_s
    key = "host_scale" if host_bound else "device_scale"
    if part_s <= 0:
        raise TensorfabError(
            f"{where}: result {result.get('workload', '?')!r}: the model "
            f"predicts no {'host' if host_bound else 'device'} time to correct"
        )
    factor = measured_s / part_s
    note = (
        f"{gpu.id}: {'host' if host_bound else 'device'} time x{factor:.2f}, from "
        f"{result.get('workload', spec.name)} measured there ({measured_s * 1e3:.2f} ms per "
        f"step at batch {batch}, {precision}; the model said {t.step_s * 1e3:.2f} ms, "
        f"{t.bound})"
    )
    return key, factor, note


def calibration_from_bench(data: dict[str, Any], where: str) -> dict[str, Any]:
    """The calibration object (``{"gpus": {id: {scales}}, "notes": [...]}``) that a bench
    train result measured on a catalogue GPU gives."""
    gpu = _gpu(data, where)
    results = data.get("results")
    if not isinstance(results, list) or not results:
        raise TensorfabError(f"{where}: no results")
    found: dict[str, list[float]] = {}
    notes = []
    for result in results:
        key, factor, note = _factor(result, gpu, where)
        found.setdefault(key, []).append(factor)
        notes.append(note)
    scales = {key: statistics.median(values) for key, values in found.items()}
    return {"gpus": {gpu.id: scales}, "notes": notes}
