"""``advise``: one profile per precision, then every GPU asked for, modelled and ranked.

Each GPU runs the spec's precision (``auto``: bf16 where the GPU has it, else fp16, else
fp32); a precision the GPU lacks, or a step that does not fit its memory, is refused with
the reason, and such a GPU is left out of the ranking. The answer names its assumptions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tensorfab.advise.model import (
    GB,
    Device,
    energy_j,
    gpu_device,
    host_dispatch_s,
    largest_batch,
    load_constants,
    memory_needed,
    step_time,
)
from tensorfab.advise.profile import Profile
from tensorfab.hardware import Gpu, gpu_by_id, load_catalogue

ProfileFn = Callable[[str], Profile]  # recorded precision -> profile


@dataclass
class Advice:
    """The answer: one row per GPU, the rankings and the assumptions."""

    workload: str
    kind: str
    gpus: list[dict[str, Any]]
    ranking: dict[str, list[str]]
    assumptions: list[str]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "kind": self.kind,
            "gpus": self.gpus,
            "ranking": self.ranking,
            "assumptions": self.assumptions,
            "notes": self.notes,
        }


def run_precision(requested: str, gpu: Gpu) -> tuple[str, str | None]:
    """(precision, refusal): ``auto`` picks bf16, fp16 or fp32; one the GPU lacks refuses."""
    if requested == "auto":
        return next(p for p in ("bf16", "fp16", "fp32") if p in gpu.tflops or p == "fp32"), None
    if requested not in gpu.tflops:
        has = ", ".join(gpu.precisions)
        return requested, f"{gpu.id} has no {requested} (it has {has})"
    return requested, None


def recorded_precision(precision: str) -> str:
    return precision if precision in ("bf16", "fp16") else "fp32"


def select_gpus(ids: list[str] | None) -> list[Gpu]:
    """The catalogue entries named (all of them when none are)."""
    return [gpu_by_id(i) for i in ids] if ids else list(load_catalogue())


def _times(profile: Profile, t: Any, steps: int) -> dict[str, Any]:
    return {
        "step_ms": t.step_s * 1e3,
        "samples_per_s": profile.batch_size / t.step_s,
        "epoch_s": t.step_s * profile.steps_per_epoch(),
        "run_s": t.step_s * steps,
        "bound": t.bound,
        "parts_ms": {
            "compute": t.compute_s * 1e3,
            "memory": t.memory_s * 1e3,
            "kernel_latency": t.latency_s * 1e3,
            "host_dispatch": t.dispatch_s * 1e3,
            "host_input": t.input_s * 1e3,
        },
    }


def _mfu(profile: Profile, step_s: float, gpu: Gpu, precision: str) -> float | None:
    if not profile.model_flops_per_sample or precision not in gpu.tflops:
        return None
    return (
        profile.model_flops_per_sample
        * profile.batch_size
        / step_s
        / (gpu.tflops[precision] * 1e12)
    )


def row(
    profile: Profile, gpu: Gpu, device: Device, precision: str, host_op_us: float | None
) -> dict:
    """One GPU's prediction as a JSON-ready row."""
    t = step_time(profile, device, precision, host_op_us)
    steps = profile.steps_per_epoch() * profile.epochs
    times = _times(profile, t, steps)
    memory = memory_needed(profile, profile.batch_size, device)
    cap = largest_batch(profile, device)
    fits = cap is None or profile.batch_size <= cap
    energy = energy_j(t, times["run_s"], device)
    return {
        "id": gpu.id,
        "name": gpu.name,
        "precision": precision,
        "batch_size": profile.batch_size,
        **times,
        "memory_gb": memory / GB,
        "device_memory_gb": gpu.memory_gb,
        "fits": fits,
        "largest_batch": cap,
        "energy_kj": None if energy is None else energy / 1e3,
        "cost_usd": times["run_s"] / 3600 * (device.price_usd_h or 0.0),
        "price_usd_h": device.price_usd_h,
        "mfu": _mfu(profile, t.step_s, gpu, precision),
        "peaks": device.peak_source,
        "refused": None
        if fits
        else (
            f"does not fit: needs {memory / GB:.1f} GB of {gpu.memory_gb:g} GB at batch "
            f"{profile.batch_size}; the largest batch that fits is {cap}"
        ),
    }


def _refused(gpu: Gpu, precision: str, batch: int, reason: str) -> dict[str, Any]:
    return {
        "id": gpu.id,
        "name": gpu.name,
        "precision": precision,
        "batch_size": batch,
        "refused": reason,
        "fits": None,
    }


def rank(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """GPU ids by run time, cost and energy (fastest, cheapest, least first)."""
    ok = [r for r in rows if not r["refused"]]
    keys = {"time": "run_s", "cost": "cost_usd", "energy": "energy_kj"}
    # ties (launch-bound runs take the same time everywhere) go to the cheaper GPU
    return {
        name: [r["id"] for r in sorted(ok, key=lambda r: (r[key], r["cost_usd"]))]
        for name, key in keys.items()
    }


def _host(profiles: list[Profile], calibrated: float | None) -> str:
    if calibrated is not None:
        return f"{calibrated:g} us per dispatched op (--calibrate)"
    if any(p.host_s is None for p in profiles):
        return f"{load_constants().host_op_us:g} us per dispatched op (assumed)"
    found = " / ".join(f"{p.precision} {host_dispatch_s(p) * 1e3:.2f} ms" for p in profiles)
    return f"a step outside kernels as measured on the meta device on this CPU ({found})"


def assumptions(profiles: list[Profile], host_op_us: float | None) -> list[str]:
    c = load_constants()
    recorded = ", ".join(
        f"{p.precision}: {p.host_ops} ops ({p.kernels()} kernels)" for p in profiles
    )
    return [
        f"profile per step, recorded on this CPU ({recorded}); FLOPs and bytes per op "
        "linear in the batch size",
        f"GEMM peak: datasheet dense x {c.gemm_efficiency:g} unless measured (--calibrate)",
        f"memory bandwidth: datasheet x {c.memory_efficiency:g}; "
        f"{c.kernel_latency_us:g} us device latency per kernel",
        f"host: {_host(profiles, host_op_us)} + {c.launch_us:g} us per CUDA launch; the "
        "GPU overlaps with the host (whose speed per op is taken to be this CPU's)",
        f"memory: the step's measured peak of live tensors + {c.context_gb:g} GB CUDA context; "
        f"{c.memory_usable:.0%} of device memory usable",
        f"energy: TDP x ({c.idle_power:g} + {1 - c.idle_power:g} x busy fraction); "
        "cost: the catalogue's on-demand price (see its sources)",
        "evaluation passes, checkpoints and start-up are not included in run time; the "
        "largest batch keeps the profiled batch's sequence length",
    ]


def advise(
    profile_for: ProfileFn,
    requested_precision: str,
    gpus: list[Gpu],
    calibration: dict[str, Any] | None = None,
) -> Advice:
    """Rows for ``gpus``; ``profile_for`` is called once per precision needed."""
    calibration = calibration or {}
    calibrated = calibration.get("host_op_us")
    host_op_us = None if calibrated is None else float(calibrated)
    profiles: dict[str, Profile] = {}
    rows = []
    for gpu in gpus:
        precision, refusal = run_precision(requested_precision, gpu)
        rec = recorded_precision(precision)
        if rec not in profiles:
            profiles[rec] = profile_for(rec)
        profile = profiles[rec]
        if refusal:
            rows.append(_refused(gpu, precision, profile.batch_size, refusal))
            continue
        device = gpu_device(gpu, calibration.get("gpus", {}).get(gpu.id))
        rows.append(row(profile, gpu, device, precision, host_op_us))
    first = next(iter(profiles.values()))
    notes = sorted({n for p in profiles.values() for n in p.notes}) + calibration.get("notes", [])
    found = assumptions(list(profiles.values()), host_op_us)
    return Advice(first.name, first.kind, rows, rank(rows), found, notes)
