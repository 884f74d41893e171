"""Latency and throughput of each runtime, the way ``trtexec`` reports them.

Batch-1 latency percentiles (p50/p99 over timed runs after warm-up) and the best
throughput over a batch-size sweep, for the PyTorch fp32 model and every exported variant
that can run on the device, each loaded through ``load_runtime`` as the server loads it.
Text models are timed either at one fixed sequence length or, closer to what a server
sees, on the token lengths of real held-out sentences: batches drawn from that mix are
padded to their longest sentence, and the report counts real tokens (not padding) per
second beside sequences per second.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tensorfab.errors import TensorfabError
from tensorfab.hardware import describe_device, resolve_device
from tensorfab.hardware.threads import kept_threads
from tensorfab.optimize.export import ExportedModel, unsupported_reason
from tensorfab.optimize.runtime import LoadedModel, TorchSettings, load_reported_runtime
from tensorfab.package import LoadedPackage
from tensorfab.tasks import Task
from tensorfab.tasks.base import variable_length

LENGTH_WINDOW = 8  # batches per length-sorted window, see length_batches

Run = Callable[[dict[str, np.ndarray]], Any]


@dataclass(frozen=True)
class TimedBatch:
    """One input batch and what it is worth: sequences and real (unpadded) tokens."""

    feed: dict[str, np.ndarray]
    sequences: int
    tokens: int  # 0 for images


def length_batches(
    lengths: Sequence[int], batch: int, seed: int = 0, window: int = LENGTH_WINDOW
) -> list[list[int]]:
    """Sentence lengths grouped into batches the way a length-aware server forms them.

    The mix is put in a seeded arrival order, repeated until it fills at least ``window``
    full batches and draws every sentence equally often; each window of ``window`` batches
    is sorted by length and cut into batches, so requests that wait together are grouped
    with others of similar length and each batch is padded to its own longest sentence.
    The batches come back in a seeded random order, so that timing any prefix of them
    samples the whole mix rather than the short end of a window.
    """
    if not lengths:
        raise ValueError("no sentence lengths to draw batches from")
    rng = np.random.default_rng(seed)
    need = batch * window
    arrival: list[int] = []
    while len(arrival) < need or len(arrival) % batch:
        arrival += [int(lengths[i]) for i in rng.permutation(len(lengths))]
    out = []
    for start in range(0, len(arrival), need):
        chunk = sorted(arrival[start : start + need])
        out += [chunk[i : i + batch] for i in range(0, len(chunk), batch)]
    return [out[i] for i in rng.permutation(len(out))]


def _timed(task: Task, lengths: list[int], rng: np.random.Generator) -> TimedBatch:
    """The task's example inputs at ``lengths``, with their sequences and real tokens."""
    tokens = sum(lengths) if variable_length(task.signature()) else 0
    return TimedBatch(task.example_feed(lengths, rng), len(lengths), tokens)


def timed_batches(
    task: Task, batch: int, lengths: Sequence[int] | None, seq_len: int
) -> list[TimedBatch]:
    """The batches one batch size is timed on: the task's random example inputs (images;
    token ids at the lengths of the mix, ``lengths``, else all at ``seq_len``)."""
    rng = np.random.default_rng(0)
    if lengths is None or not variable_length(task.signature()):
        return [_timed(task, [seq_len] * batch, rng)]
    return [_timed(task, group, rng) for group in length_batches(lengths, batch)]


def _time(run: Run, batches: list[TimedBatch], iters: int, warmup: int) -> tuple[list, int, int]:
    for i in range(warmup):
        run(batches[i % len(batches)].feed)
    times, sequences, tokens = [], 0, 0
    for i in range(iters):
        item = batches[i % len(batches)]
        start = time.perf_counter()
        run(item.feed)
        times.append(time.perf_counter() - start)
        sequences, tokens = sequences + item.sequences, tokens + item.tokens
    return times, sequences, tokens


def measure(
    run: Run, workload: dict[int, list[TimedBatch]], iters: int, warmup: int
) -> dict[str, Any]:
    """Batch-1 percentiles and sequences (and real tokens) per second for each batch size."""
    one = np.array(_time(run, workload[1], iters, warmup)[0]) * 1e3
    per_s, tokens_per_s = {}, {}
    for size, batches in workload.items():
        # every batch of the length mix at least once, so sequences/s is the mix's own
        times, sequences, tokens = _time(run, batches, max(len(batches), 3, iters // 4), 1)
        per_s[size], tokens_per_s[size] = sequences / sum(times), tokens / sum(times)
    best = max(per_s, key=per_s.__getitem__)
    row = {
        "batch1_p50_ms": float(np.percentile(one, 50)),
        "batch1_p99_ms": float(np.percentile(one, 99)),
        "throughput_per_s": {str(b): v for b, v in per_s.items()},
        "best_throughput_per_s": per_s[best],
        "best_batch": best,
    }
    if any(tokens_per_s.values()):
        row["tokens_per_s"] = {str(b): v for b, v in tokens_per_s.items()}
        row["best_tokens_per_s"] = max(tokens_per_s.values())
    return row


def _runtimes(
    pkg: LoadedPackage, variants: list[ExportedModel], device: str, threads: int | None
) -> dict[str, LoadedModel | str]:
    """Every runtime to time, or the reason one cannot run on ``device``; ``threads``:
    onnxruntime's intra-op threads (torch's are the process's)."""
    out: dict[str, LoadedModel | str] = {
        "torch-fp32": load_reported_runtime(pkg.path, "torch", device, settings=TorchSettings())
    }
    for v in variants:
        name = f"onnx-{v.variant}" if v.backend == "onnxruntime" else v.variant
        reason = unsupported_reason(v, device)
        out[name] = reason or load_reported_runtime(
            v.version_dir, v.backend, device, threads=threads
        )
    return out


def latency_report(
    pkg: LoadedPackage,
    variants: list[ExportedModel],
    *,
    batch_sizes: tuple[int, ...] = (1, 8, 32, 64),
    iters: int = 40,
    warmup: int = 5,
    seq_len: int = 32,
    lengths: Sequence[int] | None = None,
    device: str = "cpu",
    threads: int | None = None,
) -> dict[str, Any]:
    """Per runtime on ``device``: batch-1 p50/p99 latency and the best throughput over
    ``batch_sizes``; text at the mix of ``lengths`` if given, else at ``seq_len``;
    ``threads``: torch's and onnxruntime's intra-op threads while timing (None: torch's
    count and onnxruntime's default)."""
    text = variable_length(pkg.task.signature())
    if seq_len < 1 or min(batch_sizes, default=0) < 1:
        raise TensorfabError(
            f"--seq-len {seq_len}, batch sizes {list(batch_sizes)}: each must be at least 1"
        )
    lengths = list(lengths) if text and lengths else None
    with kept_threads(threads):
        workload = {b: timed_batches(pkg.task, b, lengths, seq_len) for b in {1, *batch_sizes}}
        rows: dict[str, dict[str, Any]] = {}
        for name, runtime in _runtimes(pkg, variants, device, threads).items():
            if isinstance(runtime, str):
                rows[name] = {"skipped": runtime}
                continue
            rows[name] = {**measure(runtime, workload, iters, warmup), **runtime.describe()}
        base = rows["torch-fp32"]["best_throughput_per_s"]
        for row in rows.values():
            if "skipped" not in row:
                row["speedup_vs_torch_fp32"] = row["best_throughput_per_s"] / base
        return {
            "device": describe_device(resolve_device(device, "--device")),
            "threads": torch.get_num_threads(),
            "onnxruntime_threads": threads,
            "seq_len": seq_len if text and lengths is None else None,
            "lengths": _length_summary(lengths),
            "runtimes": rows,
        }


def _length_summary(lengths: list[int] | None) -> dict[str, Any] | None:
    if lengths is None:
        return None
    return {
        "sentences": len(lengths),
        "mean": float(np.mean(lengths)),
        "p50": float(np.percentile(lengths, 50)),
        "max": int(max(lengths)),
        "batching": f"length-sorted windows of {LENGTH_WINDOW} batches, padded per batch",
    }
