"""This CPU's figures for advise's model: host time per op, matmul peaks, copy bandwidth.

The one source of CPU calibration (never the validation runs). All timed with one
intra-op thread by the thread's own CPU time (``time.thread_time``), so other jobs on the
shared cores do not inflate them; each figure is the best of many repeats.

* ``host_op_us``: a width-4 MLP (compute negligible) takes Adam steps; step CPU time / the
  ops one step dispatches (counted by advise's OpRecorder): eager dispatch + autograd cost.
* ``tflops``: a 512 x 512 fp32 matmul; ``bandwidth_gb_s``: a 64 MiB
  copy, each byte read and written (2 x size / time).
* ``efficiency``: op classes that run far below those two rooflines on a CPU, each timed
  on one generic shape (not a validated workload's), each op on its own (its thread CPU
  time inside a dispatch mode, the least of the repeats): ``convolution`` and
  ``convolution_backward`` (a 3 x 3, 32 -> 32 channel conv2d on 32 x 32 x 28 x 28: FLOPs
  by PyTorch's formulas / time / the matmul peak), ``pooling`` and ``pooling_backward``
  (2 x 2 max pooling of the same tensor: bytes read and written / time / the copy
  bandwidth). Forward and backward apart: one share for both (the first sessions') hid a
  pooling forward 8x slower per byte than its backward.

    nice -n 10 taskset -c 0 .venv/bin/python benchmarks/advise_calibrate.py
writes benchmarks/results/cpu-2026-11-30-advise-calibrate.json.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tensorfab.advise.host import least_thread_s
from tensorfab.advise.record import OpRecorder, OpTimer
from tensorfab.advise.workloads import tiny_mlp_step
from tensorfab.files import write_text_atomic

OUT = Path("benchmarks/results/cpu-2026-11-30-advise-calibrate.json")


def best_cpu_s(op: Callable[[], Any], repeats: int) -> float:
    """The least thread CPU time of ``repeats`` calls, after one warm-up."""
    op()
    return least_thread_s(op, repeats)


def host_op_us() -> dict[str, float]:
    step = tiny_mlp_step()
    recorder = OpRecorder()
    with recorder:
        step()
    seconds = best_cpu_s(step, 500)
    return {
        "ops_per_step": len(recorder.ops),
        "step_us": seconds * 1e6,
        "host_op_us": seconds * 1e6 / len(recorder.ops),
    }


def matmul_tflops(dtype: torch.dtype, n: int = 512) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n**3 / best_cpu_s(lambda: a @ b, 20) / 1e12


def copy_gb_s(nbytes: int = 64 * 2**20) -> float:
    src, dst = torch.empty(nbytes, dtype=torch.uint8), torch.empty(nbytes, dtype=torch.uint8)
    return 2 * nbytes / best_cpu_s(lambda: dst.copy_(src), 10) / 1e9


def per_op(step: Callable[[], Any], repeats: int = 10) -> dict[str, tuple[float, float, float]]:
    """Op name -> (FLOPs, bytes, least thread CPU seconds over ``repeats`` steps)."""
    step()
    recorder = OpRecorder()
    with recorder:
        step()
    least = [float("inf")] * len(recorder.ops)
    for _ in range(repeats):
        timer = OpTimer()
        with timer:
            step()
        least = [min(a, b) for a, b in zip(least, timer.seconds, strict=True)]
    found: dict[str, tuple[float, float, float]] = {}
    for op, s in zip(recorder.ops, least, strict=True):
        f, b, t = found.get(op.name, (0.0, 0.0, 0.0))
        found[op.name] = (f + op.flops, b + op.bytes, t + s)
    return found


def op_class_efficiency(peak_tflops: float, bandwidth_gb_s: float) -> dict[str, float]:
    torch.manual_seed(0)
    x = torch.randn(32, 32, 28, 28, requires_grad=True)
    conv = nn.Conv2d(32, 32, 3, padding=1)
    convs = per_op(lambda: conv(x).sum().backward())
    pools = per_op(lambda: nn.functional.max_pool2d(x, 2).sum().backward())

    def compute(op: str) -> float:
        flops, _, seconds = convs[op]
        return flops / seconds / (peak_tflops * 1e12)

    def moved(op: str) -> float:
        _, nbytes, seconds = pools[op]
        return nbytes / seconds / (bandwidth_gb_s * 1e9)

    return {
        "convolution": compute("convolution"),
        "convolution_backward": compute("convolution_backward"),
        "pooling": moved("max_pool2d_with_indices"),
        "pooling_backward": moved("max_pool2d_with_indices_backward"),
    }


def main() -> None:
    torch.set_num_threads(1)
    result = {
        "device": "2-core AMD EPYC CPU, shared with other jobs; 1 intra-op thread",
        "date": "2026-11-30",
        "command": "nice -n 10 taskset -c 0 .venv/bin/python benchmarks/advise_calibrate.py",
        "load_average_1min": float(Path("/proc/loadavg").read_text().split()[0]),
        "torch": torch.__version__,
        "timing": "thread CPU time (time.thread_time), best of the repeats",
        **host_op_us(),
        # fp32 only: a bf16 matmul runs partly outside the calling thread (oneDNN), which
        # thread CPU time would miss
        "tflops": {"fp32": matmul_tflops(torch.float32)},
        "bandwidth_gb_s": copy_gb_s(),
    }
    result["efficiency"] = op_class_efficiency(result["tflops"]["fp32"], result["bandwidth_gb_s"])
    write_text_atomic(OUT, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
