"""``bench train``: each workload trained by the plain baseline and by the engine, side by side.

Both sides run in one process on the same examples for the same number of steps; the first
``warmup`` steps (allocator, cuDNN autotuning, compilation) are not timed. The baseline is
the tutorial loop of ``bench/baselines``; the tensorfab side is the engine's own
``setup`` + ``train_epoch`` (what ``tensorfab train`` runs), with the batches it makes seen
through the same :class:`StepMeter`. The ratio is tensorfab/baseline samples per second, as
measured, below 1 included.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from tensorfab.bench.baselines import hf_trainer_ner
from tensorfab.bench.meter import MeteredBatches, PeakMemory, PowerSampler, StepMeter
from tensorfab.bench.progress import BenchProgress
from tensorfab.bench.report import load_average
from tensorfab.bench.stats import ratio, spread
from tensorfab.bench.switches import kept_switches, pytorch_defaults
from tensorfab.bench.workloads import Plan, create_workload
from tensorfab.engine.fit import train_epoch
from tensorfab.engine.profiling import ProfiledBatches, profiled
from tensorfab.engine.signals import StopFlag
from tensorfab.engine.state import TrainState
from tensorfab.engine.telemetry import peak_info, train_mfu
from tensorfab.engine.train import setup
from tensorfab.errors import TensorfabError
from tensorfab.hardware.host_memory import memory_kept
from tensorfab.spec import parse_spec
from tensorfab.spec.load import apply_overrides
from tensorfab.tasks.base import TRAIN_FLOPS_FACTOR


def side_result(
    meter: StepMeter,
    forward_flops: float,
    precision: str,
    memory: PeakMemory,
    power: PowerSampler,
) -> dict[str, Any]:
    """Throughput, step-time spread, memory, MFU and energy of one measured side."""
    times = meter.step_times_s()
    seconds = sum(times)
    tokens = meter.tokens()
    peaks = peak_info(meter.device, precision)
    model_tflops, mfu = train_mfu(forward_flops, seconds, peaks["peak_tflops"])
    energy = power.energy_j(seconds)
    no_peak = f"n/a: no measured {precision} peak on {meter.device.type}"
    return {
        "precision": precision,
        "timed_steps": len(times),
        "samples": meter.samples,
        "seconds": seconds,
        "samples_per_s": meter.samples / seconds,
        "tokens_per_s": None if tokens is None else tokens[0] / seconds,
        **_cpu_time(meter, tokens),
        "padded_tokens_per_s": None if tokens is None else meter.padded_tokens / seconds,
        "padding_fraction": None if tokens is None else 1.0 - tokens[0] / meter.padded_tokens,
        "step_time_ms": {k: v * 1e3 if k != "n" else v for k, v in spread(times).items()},
        "peak_memory_bytes": memory.bytes,
        "peak_memory_kind": memory.kind,
        "train_flops_per_sample": TRAIN_FLOPS_FACTOR * forward_flops / max(1, meter.samples),
        "model_tflops": model_tflops,
        "mfu": mfu,
        "mfu_note": no_peak if mfu is None else "model FLOPs on real tokens / (time x peak)",
        "peak_tflops": peaks["peak_tflops"],
        "datasheet_peak_tflops": peaks["datasheet_peak_tflops"],
        "energy_j_per_sample": None if energy is None else energy / meter.samples,
    }


def _cpu_time(meter: StepMeter, tokens: tuple[float, float] | None) -> dict[str, Any]:
    """On a CPU, the process's CPU seconds of the timed steps and real tokens per CPU
    second: a ratio of two sides that other jobs on a shared machine disturb less than
    the wall-clock one (they take the core away from one side and not the other)."""
    if meter.device.type != "cpu":
        return {}
    cpu = sum(meter.step_cpu_times_s())
    per_cpu_s = None if tokens is None or cpu <= 0 else tokens[0] / cpu
    return {"cpu_seconds": cpu, "tokens_per_cpu_s": per_cpu_s}


def run_baseline(workload: Any, plan: Plan, batch_size: int, advance: Any) -> dict[str, Any]:
    """The tutorial loop with PyTorch's default switches, in fp32."""
    with pytorch_defaults() as switches:
        torch.manual_seed(0)
        model = workload.build_baseline_model().to(plan.device)
        meter = StepMeter(
            plan.device, workload.count_baseline, plan.warmup, plan.total_steps, advance
        )
        with PeakMemory(plan.device) as memory, PowerSampler(plan.device) as power:
            try:
                settings = workload.run_baseline(model, plan.device, batch_size, meter)
            except torch.OutOfMemoryError:
                raise TensorfabError(
                    f"{workload.name}: the baseline ran out of GPU memory at batch {batch_size}; "
                    "choose other --workloads"
                ) from None
            meter.stop()
            meter.step_times_s()  # waits for the device inside the measured block
    result = side_result(meter, workload.forward_flops(model, meter), "fp32", memory, power)
    result["settings"] = {**settings, "batch_size": batch_size, "switches": switches}
    return result


def run_hf_trainer(workload: Any, plan: Plan, batch_size: int, advance: Any) -> dict[str, Any]:
    """``transformers.Trainer`` on the same sentences (NER workloads), fp32 as a user runs it;
    a note instead where ``accelerate`` is missing."""
    why = hf_trainer_ner.missing()
    if why is not None:
        return {"skipped": why}
    with pytorch_defaults() as switches:
        torch.manual_seed(0)
        model = workload.build_baseline_model()
        meter = StepMeter(
            plan.device, workload.count_baseline, plan.warmup, plan.total_steps, advance
        )
        with PeakMemory(plan.device) as memory, PowerSampler(plan.device) as power:
            settings = workload.run_hf_trainer(model, plan.device, batch_size, meter)
            meter.stop()
            meter.step_times_s()
    result = side_result(meter, workload.forward_flops(model, meter), "fp32", memory, power)
    result["settings"] = {**settings, "batch_size": batch_size, "switches": switches}
    return result


def _sides(workload: Any) -> tuple[tuple[str, Any], ...]:
    """Which loops a workload runs, in order: the tutorial loop, for minilm NER the Hugging
    Face Trainer, then tensorfab, whose runtime tunes the process's malloc for good
    (``hardware/host_memory.py``): the baselines before it run with the C library's defaults,
    as their users run them (each side's ``host_memory_kept`` says which it had)."""
    sides: tuple[tuple[str, Any], ...] = (("baseline", run_baseline),)
    if getattr(workload, "hf_trainer", False):
        sides += (("hf_trainer", run_hf_trainer),)
    return (*sides, ("tensorfab", run_tensorfab))


def tensorfab_spec(workload: Any, plan: Plan, batch_size: int) -> dict[str, Any]:
    """The engine's best settings for the device.

    ``auto`` compiles on a GPU for fixed-shape batches only (variable sequence lengths would
    recompile), and not in a quick run, whose few steps cannot pay the compile time back;
    compiled on a GPU, it replays CUDA graphs (``reduce-overhead``).
    """
    auto = plan.device.type == "cuda" and not workload.tokens and not plan.quick
    compile_it = plan.compile == "on" or (plan.compile == "auto" and auto)
    raw = workload.engine_spec(batch_size, plan.total_steps, compile_it)
    raw["train"]["device"] = str(plan.device)
    raw["train"]["threads"] = torch.get_num_threads()  # the baseline's: same cores both sides
    if compile_it and plan.device.type == "cuda" and not workload.tokens:
        # a small fixed-shape model is launch-bound: replay CUDA graphs (reduce-overhead)
        raw["train"]["compile_mode"] = "reduce-overhead"
    return raw


def ablations(
    workload: Any, plan: Plan, raw: dict[str, Any], precision: str = "fp32"
) -> list[tuple[str, list[str]]]:
    """Each speed setting of the tensorfab side, switched off alone (``--set`` overrides).

    What a setting buys is the full side's throughput over the run without it; settings
    that are off already (bf16 where auto chose fp32, compile in a quick run) are skipped.
    """
    switches = [("fused optimizer", ["train.fused=off"])]
    switches.append(("device-resident data", ["data.device_resident=off"]))
    if not workload.tokens:
        switches.append(("channels-last layout", ["train.channels_last=off"]))
    if workload.tokens:
        switches.append(("length bucketing", ["data.length_bucketing=false"]))
        # not an "off" but the alternative: below 1x when packing would be the faster choice
        switches.append(("bucketing, packed rows instead", ["data.packing=true"]))
    if plan.device.type == "cuda":
        switches.append(("bf16 autocast and TF32", ["train.precision=fp32"]))
    elif precision == "bf16":  # auto chose bf16 on this CPU
        switches.append(("bf16 autocast", ["train.precision=fp32"]))
    if raw["train"].get("compile"):
        switches.append(("torch.compile", ["train.compile=false", "train.compile_mode=default"]))
    return switches


def run_tensorfab(
    workload: Any, plan: Plan, batch_size: int, advance: Any, overrides: list[str] | None = None
) -> dict[str, Any]:
    """The engine's ``setup`` + ``train_epoch``, exactly as ``tensorfab train`` runs them."""
    raw = apply_overrides(tensorfab_spec(workload, plan, batch_size), overrides or [])
    with kept_switches(), tempfile.TemporaryDirectory(prefix="tensorfab-bench-") as tmp:
        raw["output"] = {"runs_dir": tmp, "name": workload.name}
        spec = parse_spec(raw)
        ctx = setup(spec, quiet=True)
        meter = StepMeter(
            ctx.runtime.device, workload.count_engine, plan.warmup, plan.total_steps, advance
        )
        state, stop = TrainState(), StopFlag()
        where = _profile_dir(plan, workload, batch_size, overrides)
        with (
            profiled(where, plan.device) as prof,
            PeakMemory(plan.device) as memory,
            PowerSampler(plan.device) as power,
        ):
            ctx.train = MeteredBatches(
                ProfiledBatches(ctx.train, prof) if prof else ctx.train, meter
            )
            while train_epoch(ctx, state, stop):
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0
            meter.stop()
            meter.step_times_s()
    flops = workload.forward_flops(ctx.model, meter)
    result = side_result(meter, flops, ctx.runtime.precision, memory, power)
    result["settings"] = {
        "engine": "tensorfab.engine setup + train_epoch",
        "spec": spec.model_dump(mode="json", exclude={"output"}),
        "data": "device-resident batches"
        if not workload.tokens
        else "SequenceBatches, per-batch padding, length bucketing",
        "precision": ctx.runtime.precision,
        "batch_size": batch_size,
    }
    return result


def _profile_dir(
    plan: Plan, workload: Any, batch_size: int, overrides: list[str] | None
) -> Path | None:
    """Where ``--profile`` puts the tensorfab side's trace (the full side, not ablations)."""
    if plan.profile_dir is None or overrides:
        return None
    return plan.profile_dir / f"{workload.name}-batch{batch_size}"


def ablate(
    workload: Any, plan: Plan, batch_size: int, sides: dict[str, Any], progress: BenchProgress
) -> list[dict[str, Any]]:
    """The tensorfab side again with one setting off at a time, and what each one buys."""
    full = sides["tensorfab"]
    out = []
    raw = tensorfab_spec(workload, plan, batch_size)
    for label, overrides in ablations(workload, plan, raw, full["precision"]):
        label_off = f"{workload.name} batch {batch_size} without {label}"
        with progress.stage(label_off, plan.total_steps) as advance:
            run = run_tensorfab(workload, plan, batch_size, advance, overrides)
        out.append(
            {
                "switched_off": label,
                "overrides": overrides,
                "samples_per_s": run["samples_per_s"],
                "tokens_per_s": run["tokens_per_s"],
                "spec": run["settings"]["spec"],
                "speedup_from_setting": ratio(full["samples_per_s"], run["samples_per_s"]),
            }
        )
    return out


def bench_workload(name: str, plan: Plan, progress: BenchProgress) -> list[dict[str, Any]]:
    """Rows of one workload: one per batch size, baseline and tensorfab with their ratio."""
    workload = create_workload(name, plan)
    rows = []
    try:
        for batch_size in workload.batch_sizes:
            sides = {}
            for side, run in _sides(workload):
                label = f"{name} batch {batch_size} {side}"
                load, host_memory_kept = load_average(), memory_kept()
                with progress.stage(label, plan.total_steps) as advance:
                    sides[side] = run(workload, plan, batch_size, advance)
                sides[side]["load_average_1m"] = {"before": load, "after": load_average()}
                sides[side]["host_memory_kept"] = host_memory_kept
            if plan.ablate:
                sides["ablations"] = ablate(workload, plan, batch_size, sides, progress)
            rows.append(
                {
                    "workload": name,
                    "batch_size": batch_size,
                    "data": workload.data,
                    **sides,
                    "ratio": ratio(
                        sides["tensorfab"]["samples_per_s"], sides["baseline"]["samples_per_s"]
                    ),
                    "tokens_ratio": ratio(
                        sides["tensorfab"]["tokens_per_s"], sides["baseline"]["tokens_per_s"]
                    ),
                    **_vs_trainer(sides),
                }
            )
    finally:
        workload.close()
    return rows


def _vs_trainer(sides: dict[str, Any]) -> dict[str, Any]:
    """``tensorfab_vs_hf_trainer``: real tokens/s over the Trainer's, same run (NER only)."""
    trainer = sides.get("hf_trainer")
    if trainer is None:
        return {}
    theirs = trainer.get("tokens_per_s")
    out = {"tensorfab_vs_hf_trainer": ratio(sides["tensorfab"]["tokens_per_s"], theirs)}
    if "tokens_per_cpu_s" in trainer:  # a CPU run: the same ratio in CPU time
        ours = sides["tensorfab"].get("tokens_per_cpu_s")
        out["tensorfab_vs_hf_trainer_cpu_time"] = ratio(ours, trainer["tokens_per_cpu_s"])
    return out


def bench_train(names: list[str], plan: Plan, progress: BenchProgress) -> dict[str, Any]:
    """Every named workload, in order; the settings of the run go with the results."""
    rows = [row for name in names for row in bench_workload(name, plan, progress)]
    return {
        "kind": "train",
        "plan": {"quick": plan.quick, "warmup_steps": plan.warmup, "timed_steps": plan.steps},
        "results": rows,
    }
