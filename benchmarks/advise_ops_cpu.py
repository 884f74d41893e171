"""Where advise's CPU step time goes wrong: measured against predicted, per op class.

Runs a named workload's real step on this CPU (one intra-op thread) under a dispatch
mode that times every ATen op by the thread's CPU time, keeps each op's least time over
the repeated steps, and sets it beside the model's time for that op (the roofline of
``benchmarks/results/cpu-2026-11-30-advise-calibrate.json``, op classes included). A
diagnosis of the model, not a calibration: nothing here is read back by advise.

    nice -n 10 taskset -c 0 .venv/bin/python benchmarks/advise_ops_cpu.py lenet-train 64
(or ``bert-base-infer 1``, or ``minilm-ner 16``: the engine's step of the minilm spec)
writes benchmarks/results/cpu-2026-11-30-advise-ops-<workload>-b<batch>.json.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from advise_validate_cpu import minilm_step

from tensorfab.advise.model import Device, cpu_from_calibration, op_seconds
from tensorfab.advise.profile import OpLine
from tensorfab.advise.record import OpRecord, OpRecorder, OpTimer
from tensorfab.advise.workloads import fp32_step
from tensorfab.files import write_text_atomic
from tensorfab.hardware.device import cpu_model

CALIBRATION = Path("benchmarks/results/cpu-2026-11-30-advise-calibrate.json")
REPEATS = 15


def _predicted_s(op: OpRecord, device: Device) -> float:
    """The model's seconds for one recorded op (advise/model.py's op_seconds, at the
    recorded op's own shape)."""
    line = OpLine(
        op.name,
        op.dtype,
        op.kernels,
        (op.flops, 0.0),
        (op.bytes, 0.0),
        op.depth,
        tuple((float(x), 0.0) for x in op.gemm),
        op.layout,
        op.pixels,
    )
    return max(op_seconds(line, 1, device, "fp32"))


def _step(name: str, batch: int, seq_len: int) -> Callable[[], None]:
    """A named workload's fp32 step, or (``minilm-ner``) the engine's step of
    examples/conll2003-minilm.yaml as advise_validate_cpu.py times it."""
    if name == "minilm-ner":
        return minilm_step(batch)
    return fp32_step(name, batch, seq_len)


def main(name: str, batch: int, seq_len: int = 128) -> None:
    torch.set_num_threads(1)
    step = _step(name, batch, seq_len)
    step()
    recorder = OpRecorder()
    with recorder:
        step()
    least = None
    whole = float("inf")
    for _ in range(REPEATS):
        timer = OpTimer()
        t0 = time.thread_time()
        with timer:
            step()
        whole = min(whole, time.thread_time() - t0)
        least = [min(a, b) for a, b in zip(least or timer.seconds, timer.seconds, strict=True)]
    device = cpu_from_calibration(json.loads(CALIBRATION.read_text()))
    table: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for op, measured in zip(recorder.ops, least or [], strict=True):
        row = table[op.name]
        row["count"] += 1
        row["measured_ms"] += measured * 1e3
        row["predicted_ms"] += _predicted_s(op, device) * 1e3
        row["gflop"] += op.flops / 1e9
        row["mb"] += op.bytes / 1e6
    rows = sorted(table.items(), key=lambda kv: -kv[1]["measured_ms"])
    result = {
        "device": f"{os.cpu_count()}-core {cpu_model()}, shared with other jobs; 1 intra-op thread",
        "date": "2026-12-01",
        "command": f"nice -n 10 taskset -c 0 .venv/bin/python benchmarks/advise_ops_cpu.py "
        f"{name} {batch}",
        "load_average_1min": float(Path("/proc/loadavg").read_text().split()[0]),
        "timing": f"thread CPU time per op, the least of {REPEATS} steps each",
        "step_ms_least_under_timer": whole * 1e3,
        "ops_ms_sum": sum(r["measured_ms"] for _, r in rows),
        "predicted_ops_ms_sum": sum(r["predicted_ms"] for _, r in rows),
        "ops": {k: dict(v) for k, v in rows},
    }
    out = Path(f"benchmarks/results/cpu-2026-11-30-advise-ops-{name}-b{batch}.json")
    write_text_atomic(out, json.dumps(result, indent=2) + "\n")
    print(f"{'op':42} {'n':>3} {'meas ms':>8} {'pred ms':>8} {'ratio':>6}")
    for k, r in rows:
        ratio = r["predicted_ms"] / r["measured_ms"] if r["measured_ms"] else float("nan")
        counts = f"{r['count']:3.0f} {r['measured_ms']:8.3f} {r['predicted_ms']:8.3f}"
        print(f"{k:42} {counts} {ratio:6.2f}")
    print(json.dumps({k: v for k, v in result.items() if k != "ops"}, indent=2))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), *(int(a) for a in sys.argv[3:4]))
