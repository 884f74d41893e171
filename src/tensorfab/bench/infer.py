"""``bench infer``: batch-1 latency and large-batch throughput, baseline vs tensorfab.

Baseline: eager fp32, ``model.eval()`` + ``no_grad``, batch by batch from the tutorial's
per-sample ``DataLoader`` (for NER the collator's per-batch padding, in file order).
tensorfab: the engine's inference path, as ``tensorfab evaluate`` runs it: the task's batches
(device-resident images; length-sorted token sequences padded per batch),
``torch.inference_mode`` and the runtime's precision policy (bf16 autocast on a GPU).

Both sides predict the same held-out examples: one untimed warm-up batch, then one timed pass
over the whole set. A prediction is timed from fetching its batch to the predicted labels
on the host, so every time includes what a caller waits for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from tensorfab.bench.baselines import lenet_mnist, ner
from tensorfab.bench.progress import BenchProgress
from tensorfab.bench.stats import percentile, ratio
from tensorfab.bench.switches import kept_switches, pytorch_defaults
from tensorfab.bench.workloads import Plan, create_workload
from tensorfab.engine.runtime import create_runtime
from tensorfab.models import create_model
from tensorfab.tasks import Placement, prepare_workload

Predict = Callable[[Any], torch.Tensor]
Batches = Callable[[], Iterator[Any]]  # a fresh pass over the set


def infer_sizes(workload: Any, plan: Plan) -> tuple[int, int, int]:
    """(batch-1 requests, large batch size, examples for the throughput pass).

    A CPU gets 4 large batches rather than 16: BERT-base at batch 64 takes seconds there.
    """
    batch = (8 if plan.quick else 64) if workload.tokens else (64 if plan.quick else 512)
    latency = 5 if plan.quick else 100
    batches = 2 if plan.quick else (16 if plan.device.type == "cuda" else 4)
    return latency, batch, min(batch * batches, workload.held_out_size())


def time_pass(batches: Batches, predict: Predict) -> list[tuple[int, float]]:
    """(samples, seconds) per batch of one full pass, after one untimed warm-up batch."""
    predict(next(batches()))
    timed = []
    it = batches()
    while True:
        t0 = time.perf_counter()
        batch = next(it, None)
        if batch is None:
            return timed
        labels = predict(batch)  # on the host: the device has finished
        timed.append((len(labels), time.perf_counter() - t0))


def summarize(latency: list[tuple[int, float]], bulk: list[tuple[int, float]]) -> dict[str, Any]:
    """Batch-1 latency percentiles (ms) and the throughput of the large-batch pass."""
    ms = [s * 1e3 for _, s in latency]
    samples = sum(n for n, _ in bulk)
    return {
        "batch1_latency_ms": {
            "p50": percentile(ms, 50),
            "p90": percentile(ms, 90),
            "p99": percentile(ms, 99),
            "n": len(ms),
        },
        "throughput_per_s": samples / sum(s for _, s in bulk),
        "throughput_samples": samples,
    }


def _baseline_pass(
    workload: Any, model: torch.nn.Module, n: int, batch_size: int, device: torch.device
) -> tuple[Batches, Predict]:
    """The tutorial's loader over the first ``n`` held-out examples, and its predict."""
    splits = workload.held_out(n)
    if workload.tokens:
        features = workload.features(splits.eval)
        loader = ner.make_loader(features, workload.tokenizer, batch_size, shuffle=False)
        return lambda: iter(loader), lambda b: ner.predict(model, b, device)
    test = splits.test
    loader = lenet_mnist.make_loader(test.images, test.labels, batch_size, shuffle=False)
    return lambda: iter(loader), lambda b: lenet_mnist.predict(model, b[0], device)


def run_baseline(workload: Any, plan: Plan, progress: BenchProgress) -> dict[str, Any]:
    """The tutorial's eager fp32 predictions, with PyTorch's default switches."""
    n_latency, batch_size, n_bulk = infer_sizes(workload, plan)
    timed = {}
    with pytorch_defaults(), progress.stage(f"{workload.name} infer baseline", 2) as advance:
        torch.manual_seed(0)
        model = workload.build_baseline_model().to(plan.device).eval()
        for key, n, size in (("latency", n_latency, 1), ("bulk", n_bulk, batch_size)):
            timed[key] = time_pass(*_baseline_pass(workload, model, n, size, plan.device))
            advance()
    result = summarize(timed["latency"], timed["bulk"])
    settings = ner.SETTINGS if workload.tokens else lenet_mnist.SETTINGS
    result.update(precision="fp32", throughput_batch_size=batch_size)
    result["settings"] = {
        "data": settings["data"],
        "padding": settings["padding"],
        "mode": "eager, model.eval() + torch.no_grad()",
    }
    return result


def run_tensorfab(workload: Any, plan: Plan, progress: BenchProgress) -> dict[str, Any]:
    """The engine's inference path: task batches, inference mode, the runtime's precision."""
    n_latency, batch_size, n_bulk = infer_sizes(workload, plan)
    raw = workload.engine_spec(batch_size, None, False)
    name, timed = raw["model"]["name"], {}
    with kept_switches(), progress.stage(f"{workload.name} infer tensorfab", 2) as advance:
        runtime = create_runtime(str(plan.device), "auto")
        where = Placement(runtime.device, bucket=True)
        model = None
        for key, n, size in (("latency", n_latency, 1), ("bulk", n_bulk, batch_size)):
            prepared = prepare_workload(raw["task"], workload.held_out(n), model_name=name)
            if model is None:
                torch.manual_seed(0)
                args = {**prepared.model_args, **raw["model"]["args"]}
                model = create_model(name, **args).to(runtime.device).eval()
            batches = prepared.make_batches("eval", size, False, where)
            predict = _engine_predict(model, prepared.task, runtime)
            timed[key] = time_pass(lambda b=batches: b.epoch(0), predict)
            advance()
    result = summarize(timed["latency"], timed["bulk"])
    result.update(precision=runtime.precision, throughput_batch_size=batch_size)
    result["settings"] = {
        "path": "task batches + torch.inference_mode + runtime autocast (tensorfab evaluate)",
        "data": "device-resident images" if not workload.tokens else "length-sorted batches",
        "precision": runtime.precision,
    }
    return result


def _engine_predict(model: torch.nn.Module, task: Any, runtime: Any) -> Predict:
    @torch.inference_mode()
    def predict(batch: Any) -> torch.Tensor:
        with runtime.autocast():
            logits = task.logits(model, batch)
        return logits.argmax(dim=-1).cpu()

    return predict


def bench_infer(names: list[str], plan: Plan, progress: BenchProgress) -> dict[str, Any]:
    """Every named workload: the baseline's and tensorfab's latency and throughput, and ratios."""
    rows = []
    for name in names:
        workload = create_workload(name, plan)
        try:
            base = run_baseline(workload, plan, progress)
            ours = run_tensorfab(workload, plan, progress)
        finally:
            workload.close()
        rows.append(
            {
                "workload": name,
                "data": workload.data,
                "baseline": base,
                "tensorfab": ours,
                "ratio": ratio(ours["throughput_per_s"], base["throughput_per_s"]),
                "batch1_latency_speedup": ratio(
                    base["batch1_latency_ms"]["p50"], ours["batch1_latency_ms"]["p50"]
                ),
            }
        )
    return {"kind": "infer", "plan": {"quick": plan.quick}, "results": rows}
