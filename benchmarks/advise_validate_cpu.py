"""This CPU's own measured runs, for advise's validation test (never for calibration).

One intra-op thread, each step timed by the thread's CPU time (``time.thread_time``: the
machine is shared, wall time measures the other jobs), the least of the repeats. Memory:
the peak resident set of a steady-state step above the resident set before it, the
median of 5 steps (Linux's peak RSS is reset through ``/proc/self/clear_refs`` first),
in the same process, with glibc told to return freed memory at once (a fixed 64 KiB mmap
threshold, no trim threshold), so that the resident set follows the tensors alive rather
than glibc's free lists.

    nice -n 10 taskset -c 0 .venv/bin/python benchmarks/advise_validate_cpu.py time
    MALLOC_MMAP_THRESHOLD_=65536 MALLOC_TRIM_THRESHOLD_=0 \
        nice -n 10 taskset -c 0 .venv/bin/python benchmarks/advise_validate_cpu.py memory
write the step times and the memory into tests/fixtures/advise/cpu-2026-11-30.json (the
malloc settings make every step fault its memory in afresh, so times come from the run
without them).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from tensorfab.advise.profile import SpecProfiler, _rows, _train_context
from tensorfab.advise.workloads import fp32_step
from tensorfab.engine.fit import train_step
from tensorfab.files import write_text_atomic
from tensorfab.hardware.device import cpu_model
from tensorfab.spec import load_spec

OUT = Path("tests/fixtures/advise/cpu-2026-11-30.json")
MINILM = "examples/conll2003-minilm.yaml"


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def _step_rss(step: Callable[[], None]) -> int:
    """The peak resident set of one step above the resident set before it."""
    before = _kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM)
    step()
    return _kib("VmHWM") - before


def measure(step: Callable[[], None], n: int) -> dict[str, float]:
    """Least and median thread CPU ms of ``n`` steps (after two warm-ups), and the median
    of 5 more steps' peak RSS above the RSS before each (one step's moved by 0.3 MB of
    9 for LeNet at batch 64: 8.80-9.08 MB in 16 steps, 2026-12-01)."""
    step()
    step()
    seconds = []
    for _ in range(n):
        t0 = time.thread_time()
        step()
        seconds.append(time.thread_time() - t0)
    seconds.sort()
    peaks = sorted(_step_rss(step) for _ in range(5))
    return {
        "min_ms": seconds[0] * 1e3,
        "median_ms": seconds[n // 2] * 1e3,
        "steps": n,
        "peak_rss_above_start_bytes": peaks[2],
    }


def minilm_step(batch: int) -> Callable[[], None]:
    """The engine's training step of the minilm spec: the model in training mode, as the
    engine trains it and advise records it (until session 16 it was left in the eval mode
    ``from_pretrained`` returns: no dropout, so PyTorch's fused CPU attention instead of
    the matmuls, softmax and dropout a training step runs)."""
    spec = load_spec(MINILM, [f"data.batch_size={batch}"])
    profiler = SpecProfiler(spec)
    ctx = _train_context(spec, profiler.workload, profiler.model.train(), "fp32")
    rows = _rows(profiler.batch, batch)
    return lambda: train_step(ctx, rows)


def main(part: str) -> None:
    torch.set_num_threads(1)
    runs = {
        "lenet-train-b64-fp32": measure(fp32_step("lenet-train", 64, 0), 30),
        "lenet-train-b512-fp32": measure(fp32_step("lenet-train", 512, 0), 10),
        "bert-base-infer-b1-s128-fp32": measure(fp32_step("bert-base-infer", 1, 128), 5),
        "minilm-ner-b16-fp32": measure(minilm_step(16), 10),
    }
    keys = ("min_ms", "median_ms", "steps") if part == "time" else ("peak_rss_above_start_bytes",)
    old = json.loads(OUT.read_text())["runs"] if OUT.is_file() else {}
    for run_id, found in runs.items():
        old.setdefault(run_id, {}).update({k: found[k] for k in keys})
    runs = old
    top = json.loads(OUT.read_text()) if OUT.is_file() else {}
    loads = {k: v for k, v in top.items() if k.startswith("load_average_1min_")}
    result = {
        **loads,
        "device": f"{os.cpu_count()}-core {cpu_model()}, shared with other jobs; 1 intra-op "
        "thread, thread CPU time, pinned to core 0 (taskset -c 0)",
        f"load_average_1min_{part}": float(Path("/proc/loadavg").read_text().split()[0]),
        "date": "2026-12-01",
        "command": "nice -n 10 taskset -c 0 .venv/bin/python benchmarks/advise_validate_cpu.py "
        "time; MALLOC_MMAP_THRESHOLD_=65536 MALLOC_TRIM_THRESHOLD_=0 nice -n 10 taskset -c 0 "
        ".venv/bin/python benchmarks/advise_validate_cpu.py memory",
        "torch": torch.__version__,
        "runs": runs,
        "conditions": "fp32; lenet/bert: the named workloads' plain loops on one synthetic "
        "batch; minilm-ner: the engine's train_step on the median-sized batch of 16 CoNLL-2003 "
        "training sentences (examples/conll2003-minilm.yaml)",
    }
    write_text_atomic(OUT, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "time")
