"""``bench infer --model``: every inference variant of one trained model, speed and quality.

The baseline (``eager-fp32``) is PyTorch fp32 eager as the tutorials predict: the package's
own model, ``model.eval()`` + ``torch.no_grad()``, batches in file order, each padded to its
own longest input. Every other row predicts the same held-out examples in the task's
length-sorted batches (``eval_batches``): ``torch-fp32`` (the torch backend in fp32: sorting
and inference mode alone), ``torch-auto`` (the precision ``optimize.precision`` chooses, with
its reason), and the variants ``tensorfab export`` writes (``onnx-fp32``,
``onnx-int8-dynamic``, ``onnx-int8-static``, ``torch-bf16``, ``torch-compile``), each exported
into a temporary repository and loaded through ``load_runtime`` as the server loads it.

Speed: sequences per second of one full pass (the prediction and its argmax on the host),
after two untimed warm-up batches (the longest and the shortest, so that a compiled graph
has seen both ends); ``repeats`` passes, the rows interleaved so a machine whose load
changes slows all alike; the median is reported. Quality: the task's metric computed from
each row's own logits of its first pass, and its delta to the baseline's.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tensorfab.bench.progress import BenchProgress
from tensorfab.bench.stats import ratio
from tensorfab.errors import TensorfabError
from tensorfab.optimize.export import ONNX_VARIANTS, TORCH_VARIANTS, export_package
from tensorfab.optimize.parity import heldout_data
from tensorfab.optimize.precision import choose_inference_precision
from tensorfab.optimize.runtime import TorchSettings, load_reported_runtime
from tensorfab.package import LoadedPackage, load_package
from tensorfab.package.io import resolve_model_dir
from tensorfab.tasks.eval_data import eval_batches

BASELINE = "eager-fp32"
SORTED_ROWS = ("torch-fp32", "torch-auto")
ONNX_ROWS = tuple(f"onnx-{v}" for v in ONNX_VARIANTS)
ROWS = (BASELINE, *SORTED_ROWS, *ONNX_ROWS, *(v for v in TORCH_VARIANTS if v != "torch-fp16"))
DEFAULT_ROWS = (
    BASELINE,
    "torch-fp32",
    "torch-auto",
    "torch-bf16",
    "onnx-fp32",
    "onnx-int8-dynamic",
)

Logits = Callable[[Any], torch.Tensor]  # one batch -> its logits on the host


@dataclass(frozen=True)
class VariantPlan:
    """What ``bench infer --model`` measures: the model, its data, rows, passes, batch."""

    model: str
    data: str | None = None
    rows: tuple[str, ...] = DEFAULT_ROWS
    repeats: int = 3
    batch_size: int = 64
    samples: int = 100_000
    device: str = "cpu"


def parse_rows(given: str | None) -> tuple[str, ...]:
    """``--variants``: known rows, the baseline always first."""
    if not given:
        return DEFAULT_ROWS
    names = [v.strip() for v in given.split(",") if v.strip()]
    unknown = [n for n in names if n not in ROWS]
    if unknown or not names:
        raise TensorfabError(
            f"--variants: unknown {unknown or given!r}; choose from {', '.join(ROWS)}"
        )
    return (BASELINE, *dict.fromkeys(n for n in names if n != BASELINE))


def file_order_batches(pkg: LoadedPackage, data: Any, size: int) -> list[Any]:
    """The baseline's batches: the data in file order, each chunk padded to its own longest."""
    out = []
    for start in range(0, len(data), size):
        chunk = pkg.task.take_samples(data, torch.arange(start, min(start + size, len(data))))
        out += list(eval_batches(pkg.task, chunk, size, torch.device("cpu")).epoch(0))
    return out


def _eager(pkg: LoadedPackage) -> Logits:
    model = pkg.model.cpu().eval()

    @torch.no_grad()
    def logits(batch: Any) -> torch.Tensor:
        return pkg.task.logits(model, batch)

    return logits


def _runtime_logits(runtime: Any, pkg: LoadedPackage) -> Logits:
    return lambda batch: torch.from_numpy(np.asarray(runtime(pkg.task.feed(batch))))


def _export_rows(pkg: LoadedPackage, rows: tuple[str, ...], repo: Path) -> dict[str, Path]:
    """Export the rows that are export variants; the version folder of each."""
    wanted = [r.removeprefix("onnx-") for r in rows if r in ONNX_ROWS or r in TORCH_VARIANTS]
    if not wanted:
        return {}
    exported = export_package(pkg, repo, "bench", 1, tuple(wanted), calibration_samples=256)
    return {
        (f"onnx-{e.variant}" if e.backend == "onnxruntime" else e.variant): e.version_dir
        for e in exported
    }


def _predictors(
    pkg: LoadedPackage, plan: VariantPlan, repo: Path, choice: dict[str, Any]
) -> dict[str, Logits]:
    folders = _export_rows(pkg, plan.rows, repo)
    threads = torch.get_num_threads()  # onnxruntime's intra-op threads: torch's, for fairness
    out: dict[str, Logits] = {}
    for row in plan.rows:
        if row == BASELINE:
            out[row] = _eager(pkg)
            continue
        if row in SORTED_ROWS:
            precision = choice["precision"] if row == "torch-auto" else "fp32"
            settings = TorchSettings(precision=precision)
            runtime = load_reported_runtime(
                pkg.path, "torch", plan.device, threads=threads, settings=settings
            )
        else:
            runtime = load_reported_runtime(folders[row], "auto", plan.device, threads=threads)
        out[row] = _runtime_logits(runtime, pkg)
    return out


def timed_pass(predict: Logits, batches: list[Any]) -> tuple[float, list[torch.Tensor]]:
    """Seconds of one pass (prediction and argmax on the host) and each batch's logits."""
    kept, seconds = [], 0.0
    for batch in batches:
        t0 = time.perf_counter()
        logits = predict(batch)
        logits.argmax(dim=-1)
        seconds += time.perf_counter() - t0
        kept.append(logits)
    return seconds, kept


def _warm_up(pkg: LoadedPackage, predict: Logits, batches: list[Any]) -> None:
    """The largest and the smallest batch by what the graph is fed, untimed."""
    by_size = sorted(batches, key=lambda b: sum(a.size for a in pkg.task.feed(b).values()))
    for batch in (by_size[-1], by_size[0]):
        predict(batch)


def _score(pkg: LoadedPackage, logits: list[torch.Tensor], batches: list[Any]) -> float:
    metric = pkg.task.metric_names[0]
    steps = [pkg.task.eval_step(x.float(), b) for x, b in zip(logits, batches, strict=True)]
    return float(pkg.task.eval_scores(steps)[metric])


def plan_examples(batches: list[Any], pkg: LoadedPackage) -> int:
    """Examples in a pass: the rows of the graph's first input, batch by batch."""
    first = pkg.task.signature()[0][0].name
    return sum(len(pkg.task.feed(b)[first]) for b in batches)


def _measure(
    pkg: LoadedPackage,
    predictors: dict[str, Logits],
    sets: dict[str, list[Any]],
    plan: VariantPlan,
    progress: BenchProgress,
) -> dict[str, dict[str, Any]]:
    seconds: dict[str, list[float]] = {row: [] for row in predictors}
    scores: dict[str, float] = {}
    with progress.stage("infer variants", plan.repeats * len(predictors)) as advance:
        for row, predict in predictors.items():
            _warm_up(pkg, predict, sets[row])
        for _ in range(plan.repeats):
            for row, predict in predictors.items():
                took, logits = timed_pass(predict, sets[row])
                seconds[row].append(took)
                if row not in scores:
                    scores[row] = _score(pkg, logits, sets[row])
                advance()
    n = plan_examples(sets[BASELINE], pkg)  # the examples of one pass
    return {
        row: {
            "sequences_per_s": [n / s for s in took],
            "median_sequences_per_s": n / statistics.median(took),
            "metric": scores[row],
        }
        for row, took in seconds.items()
    }


def bench_infer_variants(plan: VariantPlan, progress: BenchProgress) -> dict[str, Any]:
    """Every row of ``plan`` on the model's held-out data: median speed, metric, ratios."""
    model_dir = resolve_model_dir(plan.model)
    pkg = load_package(model_dir)
    data, source = heldout_data(pkg, plan.data, plan.samples)
    choice = choose_inference_precision(pkg, plan.device).to_dict()
    sorted_batches = list(
        eval_batches(pkg.task, data, plan.batch_size, torch.device("cpu")).epoch(0)
    )
    with tempfile.TemporaryDirectory() as tmp:
        predictors = _predictors(pkg, plan, Path(tmp), choice)
        sets = {r: sorted_batches for r in predictors}
        sets[BASELINE] = file_order_batches(pkg, data, plan.batch_size)
        rows = _measure(pkg, predictors, sets, plan, progress)
    base = rows[BASELINE]
    for row in rows.values():
        row["speedup_vs_eager_fp32"] = ratio(
            row["median_sequences_per_s"], base["median_sequences_per_s"]
        )
        row["metric_delta"] = row["metric"] - base["metric"]
    best = max(
        (r for r in rows if r != BASELINE),
        key=lambda r: rows[r]["median_sequences_per_s"],
        default=None,
    )
    return {
        "kind": "infer-variants",
        "model": str(plan.model),
        "data": source,
        "sequences": len(data),
        "metric": pkg.task.metric_names[0],
        "batch_size": plan.batch_size,
        "repeats": plan.repeats,
        "threads": torch.get_num_threads(),
        "inference_precision": choice,
        "rows": rows,
        "best": best,
    }
