"""The training loop: one function for every task, features as small functions it calls.

The loop never syncs the host with the device inside a step: the steps' losses are kept on
the device, and their mean and any non-finite one are read at log, checkpoint and epoch
boundaries.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable
from typing import Any

import torch

from tensorfab.engine.checkpoint import rng_state, save_checkpoint
from tensorfab.engine.context import RunContext
from tensorfab.engine.distributed import any_rank
from tensorfab.engine.evaluate import evaluate_batches
from tensorfab.engine.signals import StopFlag
from tensorfab.engine.sparse_rows import SparseRows
from tensorfab.engine.state import TrainState
from tensorfab.engine.telemetry import model_flops_utilization, peak_info
from tensorfab.errors import TensorfabError
from tensorfab.package import save_package
from tensorfab.tasks.base import TRAIN_FLOPS_FACTOR


class Interrupted(TensorfabError):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class _Guard:
    """The losses since the last log, kept on the device: their mean, and the first step
    whose loss was non-finite, are read at log time (one sync per logged step, none per
    step). A step costs a detach and two appends (7 us on a CPU); the running sum and flag
    this replaced cost eight small ops (16 us; a LeNet step takes 7-12 ms)."""

    def __init__(self, device: torch.device) -> None:
        del device  # the losses stay on the device they were computed on
        self.losses: list[torch.Tensor] = []
        self.steps: list[int] = []

    @property
    def batches(self) -> int:
        return len(self.losses)

    def observe(self, loss: torch.Tensor, step: int) -> None:
        self.losses.append(loss.detach())
        self.steps.append(step)

    def _first_bad(self) -> int:
        if not self.losses:
            return -1
        finite = torch.isfinite(torch.stack(self.losses))
        if bool(finite.all()):
            return -1
        return self.steps[int((~finite).nonzero()[0, 0])]

    def check(self, ctx: RunContext, state: TrainState) -> None:
        bad_step = self._first_bad()
        if bad_step < 0:
            return
        kept = "no checkpoint was written yet"
        if ctx.run.checkpoint.is_file():
            saved = ctx.info.get("checkpoint_step", "an earlier step")
            kept = f"the last good checkpoint {ctx.run.checkpoint} (step {saved}) is kept"
        raise TensorfabError(
            f"loss became non-finite (nan/inf) at step {bad_step} (epoch {state.epoch + 1}); "
            f"training stopped and {kept}. Lower train.lr, set train.clip_grad_norm, "
            "or use train.precision: fp32"
        )

    def take_mean(self) -> tuple[float, int]:
        n = self.batches
        total = torch.stack(self.losses).float().sum().item() if n else 0.0
        self.losses, self.steps = [], []
        return total / max(1, n), n


def checkpoint(ctx: RunContext, state: TrainState) -> None:
    ctx.info["checkpoint_step"] = state.global_step
    if ctx.env.is_main:
        _save(ctx, state)
    if ctx.on_checkpoint is not None:
        ctx.on_checkpoint(ctx, state)


def _save(ctx: RunContext, state: TrainState) -> None:
    save_checkpoint(
        ctx.run.checkpoint,
        {
            "model": ctx.model.state_dict(),
            "optimizer": ctx.optimizer.state_dict(),
            "scheduler": ctx.scheduler.state_dict(),
            "scaler": ctx.scaler.state_dict(),
            "rng": rng_state(),
            "state": state.to_dict(),
            "precision": ctx.runtime.precision,  # what auto chose: a resume keeps it
            **({"privacy": ctx.privacy.state_dict()} if ctx.privacy else {}),
            **({"average": ctx.average.state_dict()} if ctx.average is not None else {}),
        },
    )


def _clip_in_step(ctx: RunContext) -> bool:
    """Whether clipping folds into the optimizer's own pass: torch's fused Adam/AdamW on a
    CPU without loss scaling, which divides every gradient by ``grad_scale`` as it reads it."""
    opt = ctx.optimizer
    fused = isinstance(opt, torch.optim.Adam) and bool(opt.defaults.get("fused"))
    return fused and ctx.runtime.device.type == "cpu" and not ctx.scaler.is_enabled()


def clipped_step(
    optimizer: torch.optim.Optimizer,
    params: Any,
    max_norm: float | None,
    rows: SparseRows | None = None,
) -> None:
    """``clip_grad_norm_`` then ``step`` in one pass over the gradients (a fused Adam);
    ``rows``: sparse embedding tables, stepped by their moving rows after the rest.

    The clip factor is ``clip_grad_norm_``'s, min(1, max_norm / (norm + 1e-6)); the fused
    kernel divides each gradient by its inverse instead of a separate pass multiplying
    them (minilm's 22.7M gradients: one read and write of 91 MB less per step). The
    result differs from the two passes by float rounding only (a factor of 1: none).
    """
    sparse = rows.take_grads() if rows is not None else {}
    scale = None
    if max_norm is not None:
        grads = (
            rows.norm_inputs(params, sparse)
            if rows is not None
            else [p.grad for p in params if p.grad is not None]
        )
        norm = torch.nn.utils.get_total_norm(grads, 2.0)
        scale = torch.clamp(max_norm / (norm + 1e-6), max=1.0).reciprocal()
        optimizer.grad_scale = scale  # type: ignore[attr-defined]
    try:
        optimizer.step()
    finally:
        if scale is not None:
            del optimizer.grad_scale  # type: ignore[attr-defined]
    if rows is not None:
        rows.step(sparse, scale)


def _optimizer_step(ctx: RunContext) -> None:
    clip = ctx.spec.train.clip_grad_norm
    rows = ctx.runtime.sparse_rows
    if rows is not None or (clip is not None and _clip_in_step(ctx)):
        clipped_step(ctx.optimizer, list(ctx.model.parameters()), clip, rows)
        _after_step(ctx)
        return
    if clip is not None:
        ctx.scaler.unscale_(ctx.optimizer)
        torch.nn.utils.clip_grad_norm_(ctx.model.parameters(), clip)
    ctx.scaler.step(ctx.optimizer)
    _after_step(ctx)


def _after_step(ctx: RunContext) -> None:
    ctx.scaler.update()
    ctx.optimizer.zero_grad(set_to_none=True)
    ctx.scheduler.step()


def _backward(ctx: RunContext, batch: tuple[torch.Tensor, ...], sync: bool) -> torch.Tensor:
    no_sync = getattr(ctx.step_model, "no_sync", None)
    with contextlib.nullcontext() if (sync or no_sync is None) else no_sync():
        with ctx.runtime.autocast():
            logits = ctx.task.logits(ctx.step_model, batch)
        loss = ctx.task.loss(logits, batch)
        accum = ctx.spec.train.grad_accum
        ctx.scaler.scale(loss / accum if accum > 1 else loss).backward()  # x / 1 is x
    return loss


def train_step(ctx: RunContext, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """One optimizer step on one batch exactly as the loop runs it (accumulation aside):
    what ``tensorfab advise`` records op by op. Returns the batch's loss."""
    loss = _backward(ctx, batch, sync=True)
    _optimizer_step(ctx)
    return loss


def _out_of_memory(ctx: RunContext) -> TensorfabError:
    d = ctx.runtime.describe()
    return TensorfabError(
        f"out of GPU memory on {d['device']} ({d['device_name']}) at data.batch_size="
        f"{ctx.spec.data.batch_size}: lower data.batch_size (and raise train.grad_accum to keep "
        "the effective batch), or use train.precision: bf16"
    )


def _log_step(ctx: RunContext, state: TrainState, guard: _Guard, pace: dict[str, float]) -> None:
    guard.check(ctx, state)
    loss, n = guard.take_mean()
    state.epoch_loss_sum += loss * n
    state.epoch_batches += n
    now = time.perf_counter()
    sps = pace["samples"] / max(now - pace["t0"], 1e-9)
    lr = ctx.optimizer.param_groups[0]["lr"]
    record = {
        "kind": "train",
        "step": state.global_step,
        "epoch": state.epoch + 1,
        "loss": loss,
        "lr": lr,
        "samples_per_s": sps,
        **_pace(ctx, sps),
    }
    ctx.log.append(record)
    ctx.loggers.log_step(record, state.batch_in_epoch, len(ctx.train))


def _pace(ctx: RunContext, samples_per_s: float) -> dict[str, Any]:
    """What a live view needs beside the loss: wall time, planned steps, MFU (None: no peak).

    The peak is looked up once per run (``_peak``).
    """
    spec = ctx.spec.train
    steps_per_epoch = -(-len(ctx.train) // spec.grad_accum)  # the epoch's last micro-batch steps
    total = spec.epochs * steps_per_epoch
    flops = TRAIN_FLOPS_FACTOR * ctx.flops_per_sample if ctx.flops_per_sample else None
    return {
        "time": time.time(),
        "total_steps": min(total, spec.max_steps) if spec.max_steps else total,
        "mfu": model_flops_utilization(flops, samples_per_s, _peak(ctx)),
    }


def _peak(ctx: RunContext) -> float | None:
    """The measured peak for the run's precision, looked up once per run (cached per device
    by ``bench micro``): a file read and the GPU catalogue, 40-70 ms on a CPU, done before
    an epoch's clock starts, not inside its first logged step."""
    if "peak_tflops" not in ctx.info:
        ctx.info["peak_tflops"] = peak_info(ctx.runtime.device, ctx.runtime.precision)[
            "peak_tflops"
        ]
    return ctx.info["peak_tflops"]


def _flush(ctx: RunContext, state: TrainState, guard: _Guard, pace: dict[str, float]) -> None:
    """Log the losses not logged yet; nothing when the step was just logged (no second,
    empty record of the same step)."""
    if guard.batches:
        _log_step(ctx, state, guard, pace)


def _stop_message(ctx: RunContext, state: TrainState, signum: int) -> str:
    name = signal.Signals(signum).name
    return (
        f"{name} received: checkpoint saved at step {state.global_step} "
        f"(epoch {state.epoch + 1}) in {ctx.run.checkpoint}; continue with --resume"
    )


def train_epoch(ctx: RunContext, state: TrainState, stop: StopFlag) -> bool:
    """Train the rest of the current epoch; False when max_steps ended training."""
    spec = ctx.spec.train
    guard = _Guard(ctx.runtime.device)
    _peak(ctx)  # looked up before the epoch's clock starts
    pace = {"t0": time.perf_counter(), "samples": 0.0}
    n_batches = len(ctx.train)
    ctx.step_model.train()
    # resumed from a checkpoint taken at max_steps: no step past it, only the evaluation
    done = bool(spec.max_steps and state.global_step >= spec.max_steps)
    batches = iter(()) if done else ctx.train.epoch(state.epoch, state.batch_in_epoch)
    for i, batch in enumerate(batches, state.batch_in_epoch):
        last_micro = (i + 1) % spec.grad_accum == 0 or i + 1 == n_batches
        try:
            loss = _backward(ctx, batch, sync=last_micro)
        except torch.OutOfMemoryError:
            raise _out_of_memory(ctx) from None
        guard.observe(loss, state.global_step + 1)  # 1-based: the step this loss belongs to
        pace["samples"] += len(batch[0])
        if not last_micro:
            continue
        _optimizer_step(ctx)
        state.global_step += 1
        state.batch_in_epoch = i + 1
        ctx.loggers.advance(state.batch_in_epoch)
        if state.global_step % spec.log_every_steps == 0 and guard.batches:
            _log_step(ctx, state, guard, pace)
        if spec.checkpoint_every_steps and state.global_step % spec.checkpoint_every_steps == 0:
            _flush(ctx, state, guard, pace)  # so the epoch's loss sum is in the state
            checkpoint(ctx, state)
        if any_rank(bool(stop), ctx.env):
            _flush(ctx, state, guard, pace)
            checkpoint(ctx, state)
            raise Interrupted(
                _stop_message(ctx, state, stop.signum or signal.SIGTERM),
                stop.signum or signal.SIGTERM,
            )
        if spec.max_steps and state.global_step >= spec.max_steps:
            break
    if guard.batches:
        _log_step(ctx, state, guard, pace)
    state.train_samples.append(pace["samples"])
    state.train_time_s.append(time.perf_counter() - pace["t0"])
    return not (spec.max_steps and state.global_step >= spec.max_steps)


def evaluate_epoch(ctx: RunContext, state: TrainState) -> dict[str, Any]:
    """Evaluate, record history, track the best model; returns the epoch's record."""
    t0 = time.perf_counter()
    result = evaluate_batches(
        ctx.model, ctx.task, ctx.eval.epoch(0), ctx.runtime, phase(ctx, "evaluating", "eval")
    )
    ctx.info["eval_time_s"] = ctx.info.get("eval_time_s", 0.0) + time.perf_counter() - t0
    scores = result.scores
    record: dict[str, Any] = {
        "epoch": state.epoch + 1,
        "step": state.global_step,
        "train_loss": state.epoch_loss_sum / max(1, state.epoch_batches),
        "eval_loss": scores["loss"],
    }
    record.update({k: v for k, v in scores.items() if isinstance(v, float) and k != "loss"})
    if ctx.privacy is not None:
        record["epsilon"] = ctx.privacy.epsilon()  # spent so far, at train.privacy.delta
    state.history.append(record)
    ctx.log.append({"kind": "eval", **record})
    ctx.loggers.log_eval(record)
    return record


def phase(ctx: RunContext, what: str, split: str) -> Callable[[int], None]:
    """A progress callback for an evaluation pass over ``split``: examples scored so far."""
    total = ctx.info.get(f"{split}_size", 0)
    label = f"{what} {split} split"
    ctx.loggers.phase(label, 0, total, "examples")
    return lambda done: ctx.loggers.phase(label, done, total, "examples")


def metric_value(record: dict[str, Any], metric: str) -> float:
    return record["eval_loss"] if metric == "loss" else record[metric]


def save_best(ctx: RunContext, record: dict[str, Any], position: dict[str, Any]) -> None:
    """Write the model as the run's package (main rank): ``record`` is the evaluation that
    selected it, ``position`` where in the run it stands (epoch and step)."""
    if not ctx.env.is_main:
        return
    meta = {
        **ctx.package_meta,
        "task_config": ctx.task.config(),  # what evaluation chose (an OOS rule)
        "metrics": {"selection": record},
        **({"privacy": ctx.privacy.summary()} if ctx.privacy else {}),
        "run": {"name": ctx.run.path.name, **position},
    }
    ctx.save_assets(ctx.run.model_dir)  # first: the package's manifest covers it
    save_package(ctx.run.model_dir, ctx.model, meta)
