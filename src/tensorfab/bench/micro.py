"""``bench micro``: matmul TFLOP/s per precision and memory bandwidth, on one device.

The matmul timing is the hardware layer's (``measure_matmul_tflops``); on a GPU or a CPU a
full run, at the peak's own size (``peak_matmul_size``), also fills the per-device peak cache
that MFU divides by (``measured_peak_tflops``; a CPU's at its current thread count), a quick
run only reads it (a small matrix underestimates the peak, and the cache must not keep
that). Bandwidths count each byte copied once, in GB/s (1e9 bytes); a device-to-device copy
moves twice that through memory (read + write).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from tensorfab.bench.progress import BenchProgress
from tensorfab.errors import TensorfabError
from tensorfab.hardware import (
    PRECISIONS,
    datasheet_peak_tflops,
    device_name,
    measure_matmul_tflops,
    measured_peak_tflops,
    peak_matmul_size,
    supported_precisions,
)


def matmul_sizes(device: torch.device, quick: bool) -> tuple[int, int]:
    """(matrix side, timed iterations): big enough to reach the peak, small enough on a CPU."""
    if not quick:
        return peak_matmul_size(device)
    return (4096, 10) if device.type == "cuda" else (256, 5)


def matmul_row(device: torch.device, precision: str, quick: bool) -> dict[str, Any]:
    """Measured TFLOP/s of one precision, with the cached peak and the datasheet figure."""
    if precision not in supported_precisions(device):
        return {"tflops": None, "reason": f"not supported on {device.type}"}
    n, iters = matmul_sizes(device, quick)
    try:
        tflops = measure_matmul_tflops(device, precision, n=n, iters=iters)
    except (TensorfabError, RuntimeError) as exc:  # e.g. fp8 without a working _scaled_mm
        return {"tflops": None, "reason": str(exc).splitlines()[0]}
    cached = measured_peak_tflops(
        device, precision, measure_if_missing=not quick, measure=lambda _d, _p: tflops
    )
    return {
        "tflops": tflops,
        "n": n,
        "iters": iters,
        "cached_peak_tflops": cached,
        "datasheet_peak_tflops": datasheet_peak_tflops(device_name(device), precision),
    }


def _best_seconds(op: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """The fastest of ``repeats`` timed calls (after one warm-up), synced on a GPU."""
    op()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        op()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


def bandwidth(device: torch.device, quick: bool) -> dict[str, float | None]:
    """Copy bandwidths in GB/s; n/a (None) where the device has no such path."""
    nbytes = (32 if quick else 256) * 2**20
    repeats = 3 if quick else 10
    host = torch.empty(nbytes, dtype=torch.uint8)
    host_dst = torch.empty_like(host)
    found: dict[str, float | None] = {
        "host_memcpy": nbytes
        / _best_seconds(lambda: host_dst.copy_(host), torch.device("cpu"), repeats)
        / 1e9,
        "device_to_device": None,
        "host_to_device_pinned": None,
        "host_to_device_pageable": None,
        "device_to_host_pinned": None,
    }
    if device.type != "cuda":
        return found
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    pinned = host.pin_memory()
    pinned_back = torch.empty_like(pinned).pin_memory()
    ops = {
        "device_to_device": lambda: dst.copy_(src),
        "host_to_device_pinned": lambda: dst.copy_(pinned, non_blocking=True),
        "host_to_device_pageable": lambda: dst.copy_(host),
        "device_to_host_pinned": lambda: pinned_back.copy_(src, non_blocking=True),
    }
    for name, op in ops.items():
        found[name] = nbytes / _best_seconds(op, device, repeats) / 1e9
    return found


def bench_micro(device: torch.device, quick: bool, progress: BenchProgress) -> dict[str, Any]:
    """Matmul TFLOP/s for every precision tensorfab knows (n/a where unsupported), bandwidth."""
    matmul = {}
    for precision in PRECISIONS:
        if precision not in supported_precisions(device):  # said so, not timed as "0.0 s"
            matmul[precision] = matmul_row(device, precision, quick)
            progress.log(f"matmul {precision}: skipped ({matmul[precision]['reason']})")
            continue
        with progress.stage(f"matmul {precision}", 1) as advance:
            matmul[precision] = matmul_row(device, precision, quick)
            advance()
    with progress.stage("bandwidth", 1) as advance:
        bw = bandwidth(device, quick)
        advance()
    return {"kind": "micro", "quick": quick, "matmul": matmul, "bandwidth_gb_s": bw}
