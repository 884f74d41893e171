"""Latency and throughput of each runtime, the way ``trtexec`` reports them.

Batch-1 latency percentiles (p50/p99 over timed runs after warm-up) and the best
throughput over a batch-size sweep, for the PyTorch fp32 model and every exported ONNX
variant, on the same inputs. Text models are timed at a fixed sequence length.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from tensorfab.optimize.export import ExportedModel, inference_graph
from tensorfab.package import LoadedPackage

Runner = Callable[[int], None]  # run one batch of the given size


def _inputs(pkg: LoadedPackage, batch: int, seq_len: int) -> tuple[torch.Tensor, ...]:
    shape = pkg.meta["input"]
    g = torch.Generator().manual_seed(0)
    if shape["kind"] == "image":
        size = (batch, shape["channels"], shape["height"], shape["width"])
        return (torch.randint(0, 256, size, generator=g, dtype=torch.uint8),)
    ids = torch.randint(1000, 20000, (batch, seq_len), generator=g)
    return ids, torch.ones_like(ids)


def _torch_runner(pkg: LoadedPackage, seq_len: int) -> Runner:
    graph = inference_graph(pkg)[0]

    @torch.no_grad()
    def run(batch: int) -> None:
        graph(*_inputs(pkg, batch, seq_len))

    return run


def _onnx_runner(pkg: LoadedPackage, model: ExportedModel, seq_len: int) -> Runner:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    cache: dict[int, dict[str, np.ndarray]] = {}

    def run(batch: int) -> None:
        if batch not in cache:
            tensors = _inputs(pkg, batch, seq_len)
            cache[batch] = {n: t.numpy() for n, t in zip(model.input_names, tensors, strict=True)}
        session.run(["logits"], cache[batch])

    return run


def _time(run: Runner, batch: int, iters: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        run(batch)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        run(batch)
        times.append(time.perf_counter() - start)
    return times


def measure(run: Runner, batch_sizes: tuple[int, ...], iters: int, warmup: int) -> dict[str, Any]:
    one = np.array(_time(run, 1, iters, warmup)) * 1e3
    sweep = {b: b / float(np.median(_time(run, b, max(3, iters // 4), 1))) for b in batch_sizes}
    best = max(sweep, key=sweep.__getitem__)
    return {
        "batch1_p50_ms": float(np.percentile(one, 50)),
        "batch1_p99_ms": float(np.percentile(one, 99)),
        "throughput_per_s": {str(b): v for b, v in sweep.items()},
        "best_throughput_per_s": sweep[best],
        "best_batch": best,
    }


def latency_report(
    pkg: LoadedPackage,
    variants: list[ExportedModel],
    *,
    batch_sizes: tuple[int, ...] = (1, 8, 32, 64),
    iters: int = 40,
    warmup: int = 5,
    seq_len: int = 32,
) -> dict[str, Any]:
    """Per runtime: batch-1 p50/p99 latency and the best throughput over ``batch_sizes``."""
    pkg.model.cpu().eval()
    runners = {"torch-fp32": _torch_runner(pkg, seq_len)}
    runners.update({f"onnx-{v.variant}": _onnx_runner(pkg, v, seq_len) for v in variants})
    rows = {name: measure(run, batch_sizes, iters, warmup) for name, run in runners.items()}
    base = rows["torch-fp32"]["best_throughput_per_s"]
    for row in rows.values():
        row["speedup_vs_torch_fp32"] = row["best_throughput_per_s"] / base
    return {
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "seq_len": seq_len if pkg.meta["input"]["kind"] == "text" else None,
        "runtimes": rows,
    }
