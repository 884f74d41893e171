"""Peak matmul throughput per precision: datasheet figures (from the GPU catalogue,
``gpus.yaml``) and measured, cached ones.

MFU divides by the **measured** peak of the precision on the device (a square matmul,
timed once per device name and torch version, cached in a JSON file); the datasheet
peak is shown beside it. A CPU is measured the same way, with the intra-op thread count
the process uses (``torch.get_num_threads()``, part of the cache key: two threads do not
reach the peak of sixteen) and a smaller matrix (``peak_matmul_size``). Only Apple MPS has
no measured peak: its MFU reads "n/a".
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from tensorfab.errors import TensorfabError
from tensorfab.files import write_text_atomic
from tensorfab.hardware.catalogue import find_gpu
from tensorfab.hardware.device import device_name
from tensorfab.hardware.precision import PRECISION_DTYPES, supported_precisions

MeasureFn = Callable[[torch.device, str], float]


def datasheet_peak_tflops(name: str, precision: str) -> float | None:
    """The dense datasheet peak of ``precision`` for the GPU the catalogue finds in
    ``name`` (``hardware/gpus.yaml``); None for an unknown device or a precision it lacks."""
    gpu = find_gpu(name)
    return None if gpu is None else gpu.tflops.get(precision)


def mfu(flops_per_s: float, peak_tflops: float | None) -> float | None:
    """Model FLOPs utilization as a fraction; None where there is no peak ("n/a")."""
    if peak_tflops is None or peak_tflops <= 0:
        return None
    return flops_per_s / (peak_tflops * 1e12)


def _matmul_op(device: torch.device, precision: str, n: int) -> Callable[[], torch.Tensor]:
    if precision not in PRECISION_DTYPES:
        raise TensorfabError(f"precision: unknown {precision!r}")
    if precision == "fp8":
        return _fp8_op(device, n)
    dtype = PRECISION_DTYPES[precision]
    draw = _own_draws(device)
    a, b = draw(n, dtype), draw(n, dtype)
    return lambda: a @ b


def _own_draws(device: torch.device) -> Callable[[int, torch.dtype], torch.Tensor]:
    """n x n random matrices from a generator of their own: measuring a peak leaves the
    process's random state as it was, so a first run (which measures) trains exactly like
    its re-run or resume (which read the cache)."""
    gen = torch.Generator(device=device).manual_seed(0)
    return lambda n, dtype: torch.randn(n, n, device=device, dtype=dtype, generator=gen)


def _fp8_op(device: torch.device, n: int) -> Callable[[], torch.Tensor]:
    if device.type != "cuda" or not hasattr(torch, "_scaled_mm"):
        raise TensorfabError(f"fp8 matmul needs torch._scaled_mm on a CUDA GPU, not {device}")
    draw = _own_draws(device)
    a = draw(n, torch.float32).to(torch.float8_e4m3fn)
    # _scaled_mm wants the second operand column-major: the transpose of a row-major tensor.
    b = draw(n, torch.float32).to(torch.float8_e4m3fn).t()
    one = torch.ones((), device=device, dtype=torch.float32)
    return lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)


def _time_s(op: Callable[[], torch.Tensor], device: torch.device, iters: int) -> float:
    """Seconds per call of ``op``: CUDA events on a GPU, perf_counter elsewhere."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            op()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0 / iters
    t0 = time.perf_counter()
    for _ in range(iters):
        op()
    if device.type == "mps":
        torch.mps.synchronize()
    return (time.perf_counter() - t0) / iters


def measure_matmul_tflops(
    device: torch.device | str, precision: str, n: int = 8192, iters: int = 20, warmup: int = 3
) -> float:
    """Time an ``n x n`` matmul in ``precision`` on ``device``; TFLOP/s = 2n³ / t.

    fp32 runs with TF32 off, tf32 with it on; the previous TF32 setting is restored.
    """
    device = torch.device(device)
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    try:
        op = _matmul_op(device, precision, n)
        for _ in range(warmup):
            op()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = _time_s(op, device, iters)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    return 2.0 * n**3 / seconds / 1e12


def peak_matmul_size(device: torch.device) -> tuple[int, int]:
    """(matrix side, timed iterations) of a peak measurement: 8192 x 20 on a GPU; on a CPU
    1024 x 10, big enough for oneDNN's blocked kernels to run at full rate (one core: ~1 s
    in fp32, less in bf16), small enough to measure at the start of a run."""
    return (8192, 20) if torch.device(device).type == "cuda" else (1024, 10)


def measure_peak_tflops(device: torch.device, precision: str) -> float:
    """The peak measurement the cache keeps: ``measure_matmul_tflops`` at the device's size."""
    n, iters = peak_matmul_size(device)
    return measure_matmul_tflops(device, precision, n=n, iters=iters)


def peak_cache_key(device: torch.device) -> str:
    """What a cached peak belongs to: device name and torch version, and on a CPU the
    intra-op threads the measurement used."""
    key = f"{device_name(device)} | torch {torch.__version__}"
    if device.type == "cpu":
        key += f" | threads {torch.get_num_threads()}"
    return key


def default_cache_path() -> Path:
    """``$TENSORFAB_CACHE_DIR/peaks.json``, else ``~/.cache/tensorfab/peaks.json``."""
    root = os.environ.get("TENSORFAB_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "tensorfab"
    return base / "peaks.json"


def _load_cache(path: Path) -> dict[str, dict[str, float]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):  # missing or damaged: measure again
        return {}
    return data if isinstance(data, dict) else {}


def _save_cache(path: Path, data: dict[str, dict[str, float]]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def measured_peak_tflops(
    device: torch.device | str,
    precision: str,
    cache_path: Path | str | None = None,
    measure_if_missing: bool = True,
    measure: MeasureFn = measure_peak_tflops,
) -> float | None:
    """The measured matmul peak for ``precision`` on a GPU or CPU, from the cache or
    measured once and cached (``peak_cache_key``). None for MPS, a precision the device
    lacks, or a cache miss when ``measure_if_missing`` is False."""
    device = torch.device(device)
    if device.type == "mps" or precision not in supported_precisions(device):
        return None
    path = Path(cache_path) if cache_path is not None else default_cache_path()
    key = peak_cache_key(device)
    data = _load_cache(path)
    cached = data.get(key, {}).get(precision)
    if cached is not None or not measure_if_missing:
        return cached
    try:
        value = float(measure(device, precision))
    except TensorfabError:  # e.g. fp8 without torch._scaled_mm
        return None
    data = _load_cache(path)  # re-read: another process may have written meanwhile
    data.setdefault(key, {})[precision] = value
    _save_cache(path, data)
    return value
