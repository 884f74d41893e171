"""The end of a run: best model on the test split, report.md/json, plots, summary screen."""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from typing import Any

from rich.table import Table
from safetensors.torch import load_file

from tensorfab.engine.context import RunContext
from tensorfab.engine.distributed import barrier
from tensorfab.engine.evaluate import evaluate_batches
from tensorfab.engine.fit import phase
from tensorfab.engine.rundir import read_metrics
from tensorfab.engine.state import TrainState
from tensorfab.engine.telemetry import model_flops_utilization, peak_info
from tensorfab.metrics import plot_confusion_matrix, plot_curves, write_report
from tensorfab.metrics.report import runtime_rows, scored_split, subset_note
from tensorfab.package import update_metrics
from tensorfab.package.io import WEIGHTS_FILE, read_meta
from tensorfab.tasks import task_from_meta
from tensorfab.tasks.base import TRAIN_FLOPS_FACTOR


def _throughput(ctx: RunContext, state: TrainState, eval_sps: float) -> dict[str, Any]:
    """Training speed over every epoch of the run, those before a resume included."""
    samples = sum(state.train_samples) * ctx.env.world_size
    seconds = sum(state.train_time_s)
    sps = samples / seconds if seconds else 0.0
    train_flops = TRAIN_FLOPS_FACTOR * ctx.flops_per_sample if ctx.flops_per_sample else None
    peaks = peak_info(ctx.runtime.device, ctx.runtime.precision)
    return {
        "train_samples_per_s": sps,
        "eval_samples_per_s": eval_sps,
        "train_flops_per_sample": train_flops,
        "mfu": model_flops_utilization(train_flops, sps, peaks["peak_tflops"]),
        **peaks,
        "epoch_time_s": state.train_time_s,
    }


def _test_best(ctx: RunContext) -> tuple[dict[str, Any], float]:
    """Score the package on the test split as ``evaluate`` does: its weights (the best
    epoch's) with its task rebuilt from ``tensorfab.json``, so what evaluation fitted on
    that epoch's model (an OOS rule) applies, not what a later epoch fitted."""
    ctx.model.load_state_dict(load_file(str(ctx.run.model_dir / WEIGHTS_FILE)))
    task = task_from_meta(read_meta(ctx.run.model_dir), str(ctx.run.model_dir))
    t0 = time.perf_counter()
    on_batch = phase(ctx, "scoring the best model on the", "test")
    result = evaluate_batches(ctx.model, task, ctx.test.epoch(0), ctx.runtime, on_batch)
    ctx.info["final_eval_s"] = time.perf_counter() - t0
    return result.scores, result.samples_per_s


def build_report(
    ctx: RunContext,
    state: TrainState,
    status: str,
    test: dict[str, Any],
    eval_sps: float,
    total_s: float,
) -> dict[str, Any]:
    info = ctx.info
    return {
        "name": ctx.run.path.name,
        "task": ctx.spec.task,
        "status": status,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "spec": ctx.spec.model_dump(mode="json"),
        "data": {
            **{k: info[k] for k in ("source", "split", "train_size", "eval_size", "test_size")},
            "subsets": subsets(info["split"]),
        },
        "model": {
            "name": ctx.spec.model.name,
            "parameters": info["parameters"],
            "flops_per_sample": ctx.flops_per_sample,
        },
        "hardware": {**ctx.runtime.describe(), "world_size": ctx.env.world_size},
        "metrics": {
            "test": test,
            "best": _best(ctx, state),
        },
        "throughput": _throughput(ctx, state, eval_sps),
        "timings": {
            "total_s": total_s,
            "train_s": sum(state.train_time_s),
            "eval_s": info.get("eval_time_s", 0.0),
            "final_eval_s": info.get("final_eval_s", 0.0),  # in total_s too
        },
        "history": state.history,
        "steps": state.global_step,
        **({"averaging": info["averaging"]} if "averaging" in info else {}),
    }


def _best(ctx: RunContext, state: TrainState) -> dict[str, Any]:
    """What the package holds: the best epoch, or the average of epochs that beat it."""
    best = {"metric": ctx.spec.train.metric, "value": state.best_value, "epoch": state.best_epoch}
    avg = ctx.info.get("averaging", {})
    if avg.get("packaged") == "average":
        best.update(value=avg["value"], epoch=None, averaged_epochs=avg["epochs"])
    return best


def subsets(split: Any) -> dict[str, dict[str, int]]:
    """The splits a ``data.limit_*`` cut: ``{"eval": {"used": 400, "of": 3250}}``.

    The best value is measured on the limited eval part while the final scores may come
    from a full split (CoNLL without a test file scores its whole eval file), so a report
    names the subset wherever it shows such a number.
    """
    if not isinstance(split, dict):
        return {}
    out = {}
    for name in ("train", "eval", "test"):
        used, full = split.get(f"{name}_size"), split.get(f"{name}_full_size")
        cut = isinstance(used, int) and isinstance(full, int) and used < full
        if f"limit_{name}" in split and cut:
            out[name] = {"used": used, "of": full}
    return out


def finish_run(ctx: RunContext, state: TrainState, status: str, started: float) -> dict[str, Any]:
    """Rank 0 scores the best model on test and writes the report; the others wait for it.

    ``started`` is the run's ``time.perf_counter()`` at its start: the total counts the
    final evaluation and the report too.

    Only rank 0 writes the model package, so only rank 0 may read it back: other ranks
    reading ``weights.safetensors`` raced its writer under torchrun. They return an empty
    report after the barrier, so every rank exits together (and exits 0).
    """
    if not ctx.env.is_main:
        barrier(ctx.env)
        return {}
    try:
        return _finish_main(ctx, state, status, started)
    finally:
        barrier(ctx.env)


def _finish_main(ctx: RunContext, state: TrainState, status: str, started: float) -> dict[str, Any]:
    """Score the best model on test, write report, plots and the package's final metrics."""
    test, eval_sps = _test_best(ctx)
    report = build_report(ctx, state, status, test, eval_sps, time.perf_counter() - started)
    ctx.run.plots_dir.mkdir(exist_ok=True)
    steps = [r for r in read_metrics(ctx.run.metrics_file) if r.get("kind") == "train"]
    epochs = [r for r in state.history if "epoch" in r]  # not the average's record
    plots = [plot_curves(epochs, ctx.run.plots_dir / "curves.png", steps=steps)]
    # classification: per class; token classification: per tag (token level)
    cm = test.get("confusion_matrix") or test.get("token", {}).get("confusion_matrix")
    if cm:
        plots.append(
            plot_confusion_matrix(cm, ctx.task.classes, ctx.run.plots_dir / "confusion_matrix.png")
        )
    if ctx.privacy is not None:
        report["privacy"] = ctx.privacy.summary()
    report["artifacts"] = {
        "model": "model/",
        "plots": [str(p.relative_to(ctx.run.path)) for p in plots],
    }
    update_metrics(ctx.run.model_dir, {"test": _headline(test)})
    write_report(ctx.run.path, report)
    if not ctx.progress.quiet:
        ctx.progress.console.print(summary_table(report))
    return report


def _headline(scores: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in scores.items() if isinstance(v, (int, float))}


def _fmt(x: float | None, pattern: str = "{:.4f}") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else pattern.format(x)


def _where(best: dict[str, Any]) -> str:
    """``at epoch 3``, or ``averaged over epochs 3-4`` when the average was packaged."""
    ep = best.get("averaged_epochs")
    return f"averaged over epochs {ep[0]}-{ep[-1]}" if ep else f"at epoch {best['epoch']}"


def summary_table(report: dict[str, Any]) -> Table:
    """The one-screen summary printed at the end of ``tensorfab train``."""
    t = Table(title=f"run {report['name']}: {report['status']}", show_header=False)
    test, thr, hw = report["metrics"]["test"], report["throughput"], report["hardware"]
    best, split = report["metrics"]["best"], scored_split(report)
    evalcut = subset_note(report, "eval", "eval")
    rows = [
        ("device", f"{hw['device']} ({hw['device_name']})"),
        *runtime_rows(hw),
        ("best", f"{best['metric']} {_fmt(best['value'])} {_where(best)}{evalcut}"),
        *[
            (f"{split} {k}", _fmt(test[k]) + subset_note(report, "test", split))
            for k in ("accuracy", "f1", "macro_f1")
            if k in test
        ],
        ("train samples/s", _fmt(thr["train_samples_per_s"], "{:,.0f}")),
        ("MFU", _fmt(thr["mfu"], "{:.1%}")),
        ("time", f"{report['timings']['total_s']:.1f} s ({report['steps']} steps)"),
    ]
    for k, v in rows:
        t.add_row(k, v)
    return t
