"""This CPU's figures for advise's model: host time per op, matmul peaks, memory bandwidth.

The one source of CPU calibration (never the validation runs). All timed with one
intra-op thread by the thread's own CPU time (``time.thread_time``), the best of many
repeats. Thread CPU time keeps other jobs' time out, not their effect on shared caches and
memory: measured beside other jobs the figures move by 10-20 %, so the validation runs
(``advise_validate_cpu.py``) are measured right after this, in the same conditions.

* ``host_op_us``: a width-4 MLP (compute negligible) takes Adam steps; step CPU time / the
  ops one step dispatches (counted by advise's OpRecorder): eager dispatch + autograd cost.
* ``tflops``: a 512 x 512 fp32 matmul (warm: the reference the convolution shares are
  of); ``bandwidth_curve``: STREAM's add (out = a + b, fp32, 3 x size / time) from 3 to
  768 MiB moved, warm: the bandwidth an op gets by the bytes it moves (the last-level
  cache, then memory); ``bandwidth_gb_s``: the add on 8 MiB tensors, the rate classes'
  reference; a 64 MiB byte copy (``copy_gb_s``: memcpy runs 2-4x faster than the
  elementwise kernels a step's memory-bound ops are) is kept for reference.
* ``gemm_tflops``: fp32 and bf16 matrix products a[M, K] @ w[N, K]^T on a log-spaced
  grid (M 1-4096, N and K 64-4096), each timed after reading a buffer the size of the
  last-level cache and then ``a`` (the weight comes from memory, the activation from the
  cache, as in a whole step), less a 1 x 1 x 1 product's dispatch time: advise prices each
  product of a step at its shape, read in the grid (until session 16 every product ran at
  the one 512 x 512 peak, above what a 128-row 768-wide product reaches).
* ``efficiency``: op classes that run far below those two rooflines on a CPU, each timed
  on generic shapes (not a validated workload's), each op on its own (its thread CPU
  time inside a dispatch mode, the least of the repeats): ``convolution`` and
  ``convolution_backward`` per layout (memory format NCHW or channels-last, kernel 3 or
  5, channels multiples of 16 or not: ``nchw-k5-odd``), by reduction depth, output
  positions per image (8 x 8, 28 x 28) and bytes moved (batch 16, 64, 256): FLOPs by
  PyTorch's formulas / time / the matmul peak; memory-bound classes (bytes / time / the
  add's bandwidth at those bytes, or at 8 MiB for the classes limited by their own work:
  pooling, random numbers), each the ops advise's ``op_class`` puts in it:
  ``pooling`` and ``pooling_backward`` (2 x 2 max pooling of a 32 x 32 x 28 x 28 tensor;
  forward and backward apart: one share for both hid a forward 8x slower per byte),
  ``random`` (dropout's random numbers), ``embedding_backward`` (an 8192 x 256 table),
  ``foreach`` and ``fused_optimizer`` (AdamW over 16 x 256 x 256 parameters).

    nice -n 10 taskset -c 0 .venv/bin/python benchmarks/advise_calibrate.py
writes benchmarks/results/cpu-2026-11-30-advise-calibrate.json.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tensorfab.advise.host import least_thread_s
from tensorfab.advise.model import RATE_CLASSES, curve_value, op_class
from tensorfab.advise.record import OpRecorder, OpTimer
from tensorfab.advise.workloads import tiny_mlp_step
from tensorfab.files import write_text_atomic
from tensorfab.hardware.device import cpu_model

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


def add_gb_s(numel: int = 2**21) -> float:
    """STREAM's "add": out = a + b on fp32 tensors of 8 MiB each, 3 x 8 MiB moved. The
    memory-bound ops of a step are elementwise kernels like it, not memcpy: on a CPU
    with a large last-level cache a byte copy runs 2-4x faster than they do."""
    a, b, out = torch.rand(numel), torch.rand(numel), torch.empty(numel)
    return 3 * numel * 4 / best_cpu_s(lambda: torch.add(a, b, out=out), 20) / 1e9


def add_curve() -> list[list[float]]:
    """STREAM's add at 3 MiB to 768 MiB moved: [[bytes, GB/s]], each size on warm buffers
    (the least of the repeats): the last-level cache's speed, then memory's. Smaller sizes
    are left out (flat below): their 60-90 GB/s are a core's own cache on buffers reused
    back to back, which a step's small ops did not reach (bert-base's 26 adds of about a
    MB ran at 22 GB/s)."""
    curve = []
    for e in range(18, 27, 2):
        n = 2**e
        a, b, out = torch.rand(n), torch.rand(n), torch.empty(n)
        seconds = best_cpu_s(lambda a=a, b=b, o=out: torch.add(a, b, out=o), max(3, 2 ** (22 - e)))
        curve.append([3 * n * 4, 3 * n * 4 / seconds / 1e9])
    return curve


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


# Generic convolutions (padded to keep the image size) in both memory formats, two kernel
# widths and two channel alignments, at reduction depths c_in x k x k of common CNN layers, on
# 28 x 28 and 8 x 8 images and at three batch sizes (the bytes an op moves against the
# CPU's caches).
CONV_LAYOUTS = ("nchw", "cl")
CONV_KERNELS = (3, 5)
# input channels -> 32, and (the "-odd" layouts) channel counts that are no multiple of 16
CONV_CHANNELS = {"": ((1, 4, 16, 64), 32), "-odd": ((1, 6, 20, 72), 40)}
CONV_SIDES = (8, 28)
CONV_BATCHES = (16, 64, 256)


def _conv_step(
    layout: str, k: int, channels: tuple[int, int], side: int, batch: int
) -> Callable[[], None]:
    torch.manual_seed(0)
    c_in, c_out = channels
    fmt = torch.channels_last if layout == "cl" else torch.contiguous_format
    x = torch.randn(batch, c_in, side, side).contiguous(memory_format=fmt).requires_grad_()
    conv = nn.Conv2d(c_in, c_out, k, padding=k // 2).to(memory_format=fmt)
    return lambda: conv(x).sum().backward()


def _conv_curves(layout: str, k: int, odd: str, peak_tflops: float) -> dict[str, list]:
    """One layout's forward and backward shares: [[depth, [[pixels, [[bytes, share]]]]]]."""
    found: dict[str, list] = {"convolution": [], "convolution_backward": []}
    in_channels, c_out = CONV_CHANNELS[odd]
    for c_in in in_channels:
        by_side: dict[str, list] = {name: [] for name in found}
        for side in CONV_SIDES:
            points: dict[str, list] = {name: [] for name in found}
            for batch in CONV_BATCHES:
                ops = per_op(_conv_step(layout, k, (c_in, c_out), side, batch), repeats=2)
                for name, rows in points.items():
                    flops, nbytes, seconds = ops[name]
                    rows.append([nbytes, flops / seconds / (peak_tflops * 1e12)])
            for name in found:
                by_side[name].append([side * side, points[name]])
        for name in found:
            found[name].append([c_in * k * k, by_side[name]])
    return found


def conv_shares(peak_tflops: float) -> dict[str, dict[str, list]]:
    """Convolution's forward and backward FLOPs / time / the matmul peak, per layout
    ("nchw-k5") by reduction depth, output positions per image and bytes moved: a CPU runs
    a few-channel convolution far below a many-channel one, small images below large
    ones, and a large batch's below a small one's (its tensors leave the cache)."""
    found: dict[str, dict[str, list]] = {"convolution": {}, "convolution_backward": {}}
    for layout, k, odd in itertools.product(CONV_LAYOUTS, CONV_KERNELS, CONV_CHANNELS):
        for name, curves in _conv_curves(layout, k, odd, peak_tflops).items():
            found[name][f"{layout}-k{k}{odd}"] = curves
    return found


# A generic grid of matrix products a[M, K] @ w[N, K]^T (nn.Linear's layout), log-spaced.
GEMM_M = (1, 4, 16, 64, 256, 1024, 4096)
GEMM_NK = (64, 256, 1024, 4096)


def llc_bytes() -> int:
    """The last-level cache's size (sysfs), 64 MiB if it cannot be read."""
    path = Path("/sys/devices/system/cpu/cpu0/cache/index3/size")
    text = path.read_text().strip() if path.is_file() else ""
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    if text[:-1].isdigit() and text[-1] in units:
        return int(text[:-1]) * units[text[-1]]
    return 64 * 2**20


def _cold_s(
    op: Callable[[], Any], warm: torch.Tensor, evict: torch.Tensor, clock: Callable[[], float]
) -> float:
    """The least time of 3 calls of ``op``, each after reading a buffer the size of the
    last-level cache and then ``warm`` (not timed): the weight comes from memory, as in a
    whole step, where the ops since its last use evicted it, and the activation from the
    cache, as the op before has just written it."""
    op()
    best = float("inf")
    for _ in range(3):
        evict.sum()
        warm.sum()
        t0 = clock()
        op()
        best = min(best, clock() - t0)
    return best


def gemm_grid(dtype: torch.dtype) -> list:
    """TFLOP/s of each product of the grid, weight cold and activation warm, less the
    time of a 1 x 1 x 1 product (dispatch, which advise counts as host time), as
    [[m, [[n, [[k, tflops]]]]]].
    bf16 by process CPU time (oneDNN may run it outside the calling thread)."""
    clock = time.thread_time if dtype == torch.float32 else time.process_time
    evict = torch.ones(llc_bytes() // 4)
    one = torch.ones(1, 1, dtype=dtype)
    floor = _cold_s(lambda: torch.mm(one, one), one, evict, clock)
    grid = []
    for m in GEMM_M:
        rows = []
        for n in GEMM_NK:
            points = []
            for k in GEMM_NK:
                a, w = torch.randn(m, k, dtype=dtype), torch.randn(n, k, dtype=dtype)
                out = torch.empty(m, n, dtype=dtype)
                s = _cold_s(lambda a=a, w=w, o=out: torch.mm(a, w.t(), out=o), a, evict, clock)
                points.append([k, 2 * m * n * k / max(s - floor, 0.1 * s) / 1e12])
            rows.append([n, points])
        grid.append([m, rows])
    return grid


def _optimizer_step(fused: bool) -> Callable[[], None]:
    """An AdamW step (fused, or foreach with gradient clipping's norm) over 16 generic
    256 x 256 parameters with gradients."""
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(256, 256)) for _ in range(16)]
    for p in params:
        p.grad = torch.randn_like(p)
    kind = {"fused": True} if fused else {"foreach": True}
    optimizer = torch.optim.AdamW(params, lr=1e-4, **kind)

    def step() -> None:
        if not fused:
            torch._foreach_norm([p.grad for p in params])
        optimizer.step()

    return step


def memory_classes(bandwidth: Callable[[float], float], flat_gb_s: float) -> dict[str, float]:
    """Shares of the bandwidth (bytes / time / ``bandwidth`` GB/s at those bytes, the add's
    curve; ``flat_gb_s`` for the classes limited by their own work, model.RATE_CLASSES) of
    the op classes of memory-bound
    ops a CPU runs far below it, each class the ops advise's model puts in it
    (``op_class``), each on a generic shape: pooling and its backward (2 x 2 max pooling
    of 32 x 32 x 28 x 28), dropout's random numbers (on the same tensor), an embedding's
    backward (8192 x 256 table, 2048 lookups), optimizer kernels (AdamW over 16 x 256 x
    256 parameters, foreach with a gradient norm, or fused)."""
    torch.manual_seed(0)
    x = torch.randn(32, 32, 28, 28, requires_grad=True)
    table = nn.Embedding(8192, 256)
    ids = torch.randint(0, 8192, (32, 64))
    steps = {
        ("pooling", "pooling_backward"): lambda: nn.functional.max_pool2d(x, 2).sum().backward(),
        ("random",): lambda: nn.functional.dropout(x.detach(), 0.1, training=True),
        ("embedding_backward",): lambda: table(ids).sum().backward(),
        ("foreach",): _optimizer_step(fused=False),
        ("fused_optimizer",): _optimizer_step(fused=True),
    }
    found = {}
    for classes, step in steps.items():
        ops = per_op(step)
        for cls in classes:
            picked = [v for name, v in ops.items() if op_class(name) == cls]
            rate = (lambda _: flat_gb_s) if cls in RATE_CLASSES else bandwidth
            at_curve = sum(b / (rate(b) * 1e9) for _, b, _ in picked)
            found[cls] = at_curve / sum(t for _, _, t in picked)
    return found


def op_class_efficiency(
    peak_tflops: float, curve: list[list[float]], flat_gb_s: float
) -> dict[str, Any]:
    return {
        **conv_shares(peak_tflops),
        **memory_classes(lambda nbytes: curve_value(curve, (nbytes,)), flat_gb_s),
    }


def main() -> None:
    torch.set_num_threads(1)
    result = {
        "device": f"{os.cpu_count()}-core {cpu_model()}, shared with other jobs; 1 intra-op thread",
        "date": "2026-12-01",
        "command": "nice -n 10 taskset -c 0 .venv/bin/python benchmarks/advise_calibrate.py",
        "load_average_1min": float(Path("/proc/loadavg").read_text().split()[0]),
        "torch": torch.__version__,
        "timing": "thread CPU time (time.thread_time), best of the repeats",
        **host_op_us(),
        # fp32 only: a bf16 matmul runs partly outside the calling thread (oneDNN), which
        # thread CPU time would miss
        "tflops": {"fp32": matmul_tflops(torch.float32)},
        "bandwidth_gb_s": add_gb_s(),
        "copy_gb_s": copy_gb_s(),  # for reference: memcpy of 64 MiB, not used by the model
        "bandwidth_curve": add_curve(),
        "llc_bytes": llc_bytes(),
        "gemm_tflops": {"fp32": gemm_grid(torch.float32), "bf16": gemm_grid(torch.bfloat16)},
    }
    result["efficiency"] = op_class_efficiency(
        result["tflops"]["fp32"], result["bandwidth_curve"], result["bandwidth_gb_s"]
    )
    write_text_atomic(OUT, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
