"""Every value ``--calibrate`` reads, checked in one place before the model sees it.

One check per kind of input: an advise calibration object (``check_raw``), a ``tensorfab
bench micro`` result (``from_micro``) and a ``tensorfab bench train`` result
(``train_gpu``, ``train_results``). Each refuses a bad value in one line naming the file
and the field. Numbers must be finite and inside a range wide enough for any real device
but narrow enough that no product or quotient the model makes of them (a peak of 1e-300
TFLOP/s, a scale of 1e300) reaches zero, NaN or infinity: a calibration that passes can
only give positive, finite times, so ``--json`` stays strict JSON.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from tensorfab.advise.advise import run_precision
from tensorfab.errors import TensorfabError
from tensorfab.hardware import Gpu, find_gpu, load_catalogue
from tensorfab.spec import JobSpec, parse_spec

# field -> (least, most) a value may be; price may be 0 (a GPU you own), the rest not
RANGES = {
    "tflops": (1e-3, 1e6),
    "bandwidth_gb_s": (1e-3, 1e7),
    "price_usd_h": (0.0, 1e4),
    "host_scale": (1e-6, 1e6),
    "device_scale": (1e-6, 1e6),
    "host_op_us": (1e-3, 1e6),
    "step_time_ms.median": (1e-6, 8.64e7),  # up to a day per step
}
GPU_KEYS = ("tflops", "bandwidth_gb_s", "price_usd_h", "host_scale", "device_scale")
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")  # what advise models (fp8 is not)
MAX_BATCH = 2**31 - 1


def shown(value: Any) -> str:
    """A value as a message shows it: its repr, cut to 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def number(value: Any, where: str, name: str, kind: str | None = None) -> float:
    """``value`` as a float if it is a JSON number inside ``RANGES[kind or name]``."""
    lo, hi = RANGES[kind or name]
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and lo <= value <= hi and (lo > 0 or value >= 0)):
        bound = "a number >= 0" if lo == 0 else f"a number from {lo:g} to {hi:g}"
        raise TensorfabError(f"{where}: {name} must be {bound}, not {shown(value)}")
    return float(value)


def obj(value: Any, where: str, name: str, keys: tuple[str, ...] | None = None) -> dict:
    """``value`` if it is a JSON object (with only ``keys``, when given)."""
    if not isinstance(value, dict):
        raise TensorfabError(f"{where}: {name} must be an object, not {shown(value)}")
    unknown = sorted(set(value) - set(keys)) if keys is not None else []
    if unknown:
        raise TensorfabError(
            f"{where}: {name}: unknown keys {', '.join(map(str, unknown))} "
            f"(known: {', '.join(keys or ())})"
        )
    return value


def _gpu_entry(gpu: Gpu, raw: Any, where: str) -> dict[str, Any]:
    entry = obj(raw, where, f"gpus.{gpu.id}", GPU_KEYS)
    out: dict[str, Any] = {}
    for key, value in entry.items():
        name = f"gpus.{gpu.id}.{key}"
        if key == "tflops":
            peaks = obj(value, where, name, tuple(gpu.tflops))
            out[key] = {p: number(v, where, f"{name}.{p}", "tflops") for p, v in peaks.items()}
        else:
            out[key] = number(value, where, name, key)
    return out


def check_raw(data: dict[str, Any], where: str) -> dict[str, Any]:
    """An advise calibration object, every key known and every number in range."""
    obj(data, where, "the calibration", ("host_op_us", "gpus"))
    out: dict[str, Any] = {}
    if "host_op_us" in data:
        out["host_op_us"] = number(data["host_op_us"], where, "host_op_us")
    if "gpus" in data:
        by_id = {g.id: g for g in load_catalogue()}
        gpus = obj(data["gpus"], where, "gpus", tuple(by_id))
        out["gpus"] = {i: _gpu_entry(by_id[i], raw, where) for i, raw in gpus.items()}
    return out


def device_gpu(environment: Any, where: str) -> Gpu:
    """The catalogue GPU a result's ``environment.device_name`` names (a CPU is none)."""
    env = obj(environment, where, "environment")
    name = env.get("device_name")
    if not isinstance(name, str):
        raise TensorfabError(
            f"{where}: environment.device_name must be a string, not {shown(name)}"
        )
    gpu = find_gpu(name) if env.get("device") != "cpu" else None
    if gpu is None:
        raise TensorfabError(
            f"{where}: environment.device_name {name!r} is not a GPU of the catalogue "
            "(measured figures correct the GPU they were measured on)"
        )
    return gpu


def from_micro(data: dict[str, Any], where: str) -> dict[str, Any]:
    """The calibration a bench micro result gives: its matmul peaks (those the GPU has;
    a null peak was not measured) and twice its device-to-device copy bandwidth."""
    gpu = device_gpu(data.get("environment"), where)
    matmul = obj(data.get("matmul"), where, "matmul")
    tflops = {}
    for p, r in matmul.items():
        value = obj(r, where, f"matmul.{p}").get("tflops")
        if value is not None and p in gpu.tflops:
            tflops[p] = number(value, where, f"matmul.{p}.tflops", "tflops")
    entry: dict[str, Any] = {"tflops": tflops}
    d2d = obj(data.get("bandwidth_gb_s", {}), where, "bandwidth_gb_s").get("device_to_device")
    if d2d is not None:
        name = "bandwidth_gb_s.device_to_device"
        entry["bandwidth_gb_s"] = 2 * number(d2d, where, name, "bandwidth_gb_s")  # read + write
    return {"gpus": {gpu.id: entry}}


class Measured(NamedTuple):
    """One bench train result, checked: what ran, how, and its median step."""

    label: str  # "result 0 ('lenet-mnist')", for messages
    workload: str
    spec: JobSpec
    precision: str
    batch: int
    seconds: float


def _batch(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BATCH:
        raise TensorfabError(
            f"{where}: batch_size must be an integer from 1 to {MAX_BATCH}, not {shown(value)}"
        )
    return value


def _precision(value: Any, gpu: Gpu, where: str) -> str:
    if value not in PRECISIONS:
        raise TensorfabError(
            f"{where}: tensorfab.precision must be one of {', '.join(PRECISIONS)}, "
            f"not {shown(value)}"
        )
    _, refusal = run_precision(value, gpu)
    if refusal:
        raise TensorfabError(f"{where}: tensorfab.precision: {refusal}")
    return value


def _result(raw: Any, i: int, gpu: Gpu, where: str) -> Measured:
    result = obj(raw, where, f"results[{i}]")
    workload = result.get("workload", "?")
    label = f"result {i} ({workload!r})"
    at = f"{where}: {label}"
    if not isinstance(workload, str):
        raise TensorfabError(f"{at}: workload must be a string")
    side = obj(result.get("tensorfab"), at, "tensorfab")
    steps = obj(side.get("step_time_ms"), at, "tensorfab.step_time_ms")
    median = number(steps.get("median"), at, "tensorfab.step_time_ms.median", "step_time_ms.median")
    batch = _batch(result.get("batch_size"), at)
    precision = _precision(side.get("precision"), gpu, at)
    settings = obj(side.get("settings"), at, "tensorfab.settings")
    spec_raw = obj(settings.get("spec"), at, "tensorfab.settings.spec")
    try:
        spec = parse_spec(spec_raw)
    except TensorfabError as exc:
        first = str(exc).splitlines()[0]
        raise TensorfabError(f"{at}: tensorfab.settings.spec is not a job spec ({first})") from None
    return Measured(label, workload, spec, precision, batch, median / 1e3)


def train_results(data: dict[str, Any], gpu: Gpu, where: str) -> list[Measured]:
    """Every result of a bench train file, checked before any is profiled."""
    results = data.get("results")
    if not isinstance(results, list) or not results:
        raise TensorfabError(f"{where}: results must be a non-empty list, not {shown(results)}")
    return [_result(raw, i, gpu, where) for i, raw in enumerate(results)]
