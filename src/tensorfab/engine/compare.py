"""Time the same training epoch on several devices: the GPU tutorials' CPU-vs-GPU question.

``tensorfab demo`` prints its speed-up with this function and ``tensorfab bench compare``
is meant to reuse it. Each device gets one warm-up epoch (allocator, cuDNN autotuning)
and then one timed epoch; the engine's epoch ends with a host sync, so the time is real.
"""

from __future__ import annotations

import tempfile
from typing import Any

import torch

from tensorfab.engine.fit import train_epoch
from tensorfab.engine.signals import StopFlag
from tensorfab.engine.state import TrainState
from tensorfab.engine.train import setup
from tensorfab.spec import JobSpec, parse_spec


def available_devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def time_epoch(spec: JobSpec, device: str) -> dict[str, Any]:
    """Seconds and samples/s of one training epoch of ``spec`` on ``device`` (after warm-up)."""
    raw = spec.model_dump(mode="json")
    raw["train"].update(device=device, epochs=2, max_steps=None, checkpoint_every_steps=None)
    with tempfile.TemporaryDirectory(prefix="tensorfab-compare-") as tmp:
        raw["output"] = {"runs_dir": tmp, "name": f"epoch-{device}"}
        ctx = setup(parse_spec(raw), quiet=True)
        state, stop = TrainState(), StopFlag()
        for epoch in range(2):
            state.epoch, state.batch_in_epoch = epoch, 0
            train_epoch(ctx, state, stop)
    seconds = state.train_time_s[-1]
    samples = state.train_samples[-1]
    return {
        "device": device,
        "device_name": ctx.runtime.describe()["device_name"],
        "precision": ctx.runtime.precision,
        "epoch_s": seconds,
        "samples_per_s": samples / seconds,
        "samples": int(samples),
    }


def compare_devices(spec: JobSpec, devices: list[str] | None = None) -> dict[str, Any]:
    """Epoch time per device and the speed-up of each over the first (the CPU)."""
    rows = [time_epoch(spec, d) for d in (devices or available_devices())]
    base = rows[0]["epoch_s"]
    for row in rows:
        row["speedup"] = base / row["epoch_s"]
    return {
        "workload": f"{spec.model.name}-{spec.data.format}",
        "batch_size": spec.data.batch_size,
        "devices": rows,
    }
