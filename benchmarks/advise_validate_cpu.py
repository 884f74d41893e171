"""This CPU's own measured runs, for advise's validation test (never for calibration).

Step times (the fastest and the median of repeated steps: the machine is shared) and the
peak memory of a training step (peak RSS above the RSS before the first step, measured in
a fresh process), for the workloads the validation test predicts:

    nice -n 10 .venv/bin/python benchmarks/advise_validate_cpu.py
writes tests/fixtures/advise/cpu-2026-11-30.json.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
import time
from collections.abc import Callable
from pathlib import Path

import torch

from tensorfab.advise.profile import SpecProfiler, _rows, _train_context
from tensorfab.advise.workloads import NAMED, _infer_step, _train_step
from tensorfab.engine.fit import train_step
from tensorfab.files import write_text_atomic
from tensorfab.spec import load_spec

OUT = Path("tests/fixtures/advise/cpu-2026-11-30.json")
MINILM = "examples/conll2003-minilm.yaml"


def _times(step: Callable[[], None], n: int) -> dict[str, float]:
    step()
    seconds = []
    for _ in range(n):
        t0 = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - t0)
    seconds.sort()
    return {"min_ms": seconds[0] * 1e3, "median_ms": seconds[n // 2] * 1e3, "steps": n}


def _named_step(name: str, batch: int, seq_len: int) -> Callable[[], None]:
    named = NAMED[name]
    torch.manual_seed(0)
    model, inputs = named.build(), named.inputs(batch, seq_len)
    if named.kind == "infer":
        return _infer_step(model.eval(), inputs)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, foreach=True)
    return _train_step(model.train(), inputs, "fp32", optimizer)


def _minilm_step(batch: int) -> Callable[[], None]:
    spec = load_spec(MINILM, [f"data.batch_size={batch}"])
    profiler = SpecProfiler(spec)
    ctx = _train_context(spec, profiler.workload, profiler.model, "fp32")
    rows = _rows(profiler.batch, batch)
    return lambda: train_step(ctx, rows)


def _rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


def _peak_child(kind: str, batch: int, queue: mp.Queue) -> None:
    step = _minilm_step(batch) if kind == "minilm-ner" else _named_step(kind, batch, 128)
    before = _rss_bytes()
    step()
    step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    queue.put(peak - before)


def peak_memory(kind: str, batch: int) -> int:
    """Peak RSS of two steps above the RSS before them, in a fresh process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_peak_child, args=(kind, batch, queue))
    child.start()
    value = queue.get(timeout=600)
    child.join()
    return int(value)


def main() -> None:
    runs = {
        "lenet-train-b64-fp32": _times(_named_step("lenet-train", 64, 0), 40),
        "lenet-train-b512-fp32": _times(_named_step("lenet-train", 512, 0), 20),
        "bert-base-infer-b1-s128-fp32": _times(_named_step("bert-base-infer", 1, 128), 10),
        "minilm-ner-b16-fp32": _times(_minilm_step(16), 20),
    }
    memory = {
        "lenet-train-b512-fp32": peak_memory("lenet-train", 512),
        "minilm-ner-b16-fp32": peak_memory("minilm-ner", 16),
    }
    result = {
        "device": "2-core AMD EPYC CPU, shared with other jobs (load average about 18)",
        "date": "2026-11-30",
        "command": "nice -n 10 .venv/bin/python benchmarks/advise_validate_cpu.py",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "step_time": runs,
        "peak_memory_above_start_bytes": memory,
        "conditions": "fp32; lenet/bert: the named workloads' plain loops on one synthetic "
        "batch; minilm-ner: the engine's train_step on the median-sized batch of 16 CoNLL-2003 "
        "training sentences (examples/conll2003-minilm.yaml)",
    }
    write_text_atomic(OUT, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
