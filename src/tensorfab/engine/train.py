"""``train(spec)``: setup -> fit -> report, each a plain function.

This is what ``tensorfab train`` calls and what a library user calls; the CLI only parses
arguments and prints.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tensorfab.data import create_dataset
from tensorfab.engine.autoprecision import choose_precision
from tensorfab.engine.averaging import create_average, evaluate_average
from tensorfab.engine.checkpoint import load_checkpoint, set_rng_state
from tensorfab.engine.context import RunContext
from tensorfab.engine.distributed import (
    DistEnv,
    barrier,
    device_for_rank,
    dist_env_from_environ,
    init_distributed,
    shutdown_distributed,
    wrap_model,
)
from tensorfab.engine.fit import (
    checkpoint,
    evaluate_epoch,
    metric_value,
    save_best,
    train_epoch,
)
from tensorfab.engine.loggers import Loggers, TensorBoardLogger, flatten
from tensorfab.engine.optim import create_optimizer, create_scheduler
from tensorfab.engine.privacy import Privacy, make_private
from tensorfab.engine.profiling import ProfiledBatches, profiled
from tensorfab.engine.progress import ProgressReporter
from tensorfab.engine.report import finish_run
from tensorfab.engine.rundir import MetricsLog, RunDir, check_run_dir, open_run_dir, run_path
from tensorfab.engine.runtime import Runtime, create_runtime, seed_everything
from tensorfab.engine.signals import stop_on_signals
from tensorfab.engine.state import TrainState
from tensorfab.engine.telemetry import flops_per_sample
from tensorfab.errors import TensorfabError
from tensorfab.hardware.threads import kept_threads
from tensorfab.models import create_model, layer_lr_scales
from tensorfab.spec import JobSpec
from tensorfab.tasks import Placement, Workload, prepare_workload


@dataclass
class RunResult:
    run_dir: Path
    status: str  # completed | early-stopped | max-steps | already-complete (nothing done)
    report: dict[str, Any]  # empty on ranks other than 0: only rank 0 writes the report
    is_main: bool = True  # rank 0 (or a single process): the one that prints
    message: str = ""  # for already-complete: the one line that says so


def _check_metric(spec: JobSpec, names: tuple[str, ...]) -> None:
    if spec.train.metric not in names:
        raise TensorfabError(
            f"train.metric: {spec.train.metric!r} is not a metric of task {spec.task!r}; "
            f"choose one of {', '.join(names)}"
        )


def build_workload(spec: JobSpec, progress: Loggers | None = None) -> tuple[Workload, Any]:
    """The spec's data read and prepared by its task; ``progress`` hears of long phases.

    Reading says nothing: a malformed file must end in its one ``error:`` line alone.
    """
    splits = create_dataset(spec.data.format, **spec.data.model_dump(exclude={"format"}))
    workload = prepare_workload(
        spec.task,
        splits,
        val_fraction=spec.data.val_fraction,
        split_seed=spec.data.split_seed,
        limit_eval=spec.data.limit_eval,
        model_name=spec.model.name,
        max_length=spec.data.max_length,
        context=spec.data.context,
        label_pieces=spec.data.label_pieces,
        head=spec.model.head,
        fairness=spec.train.fairness.model_dump() if spec.train.fairness else None,
        intents=spec.intents.model_dump() if spec.intents else None,
        progress=progress.phase if progress is not None else None,
    )
    return workload, splits


def _assets(workload: Workload, model: torch.nn.Module) -> Callable[[Path], None]:
    """The package's assets, then what the task fits on the trained model (thresholds)."""
    post = workload.postprocess
    if post is None:
        return workload.save_assets

    def save(model_dir: Path) -> None:
        workload.save_assets(model_dir)
        post(model, model_dir)

    return save


def _batches(spec: JobSpec, workload: Workload, env: DistEnv, device: torch.device) -> dict:
    where = Placement(
        device,
        spec.seed,
        env.rank,
        env.world_size,
        spec.data.device_resident,
        spec.data.length_bucketing,
        spec.data.packing,
    )
    eval_bs = spec.data.eval_batch_size or max(spec.data.batch_size, 1024)
    return {
        "train": workload.make_batches("train", spec.data.batch_size, True, where),
        "eval": workload.make_batches("eval", eval_bs, False, where),
        "test": workload.make_batches("test", eval_bs, False, where),
    }


def _fused_by_default(spec: JobSpec, device: torch.device) -> bool:
    """``fused: auto``: on a GPU, and on a CPU (not with DP-SGD), where torch's fused
    AdamW step over minilm-l6's 22M parameters took 207 ms against 863 ms for the default
    per-tensor loop (one thread; --profile showed the optimizer at 35 % of a step)."""
    return device.type == "cuda" or (device.type == "cpu" and spec.train.privacy is None)


def _optimization(
    spec: JobSpec, model: torch.nn.Module, device: torch.device, batches_per_epoch: int
) -> tuple[Any, Any]:
    t = spec.train
    fused = t.fused == "on" or (t.fused == "auto" and _fused_by_default(spec, device))
    scales = layer_lr_scales(model, t.layer_lr_decay) if t.layer_lr_decay else None
    optimizer = create_optimizer(
        t.optimizer,
        model,
        lr=t.lr,
        weight_decay=t.weight_decay,
        momentum=t.momentum,
        fused=fused,
        lr_scales=scales,
    )
    scheduler = create_scheduler(
        optimizer,
        t.scheduler,
        total_steps=_total_steps(spec, batches_per_epoch),
        warmup_steps=t.warmup_steps,
    )
    return optimizer, scheduler


def setup(
    spec: JobSpec,
    *,
    resume: bool = False,
    quiet: bool = False,
    saved: dict[str, Any] | None = None,
) -> RunContext:
    """Check every input and build the run; create the run directory only at the end.

    Everything that can fail on bad input (device, the run-directory rules, data, metric,
    model, and on ``resume`` the checkpoint and the metrics log) fails before the first
    write, so a failed start leaves no directory behind and an existing one untouched:
    a half-created ``runs/<name>`` would otherwise block that name for the corrected run.
    ``saved`` is the run's checkpoint when the caller has read it already (``train``).
    """
    env = dist_env_from_environ()
    runtime = create_runtime(device_for_rank(spec.train.device, env), spec.train.precision)
    init_distributed(env, runtime.device)
    # Only the main rank checks the rules: the others might already see the directory
    # the main rank creates below and refuse it.
    run = check_run_dir(spec, resume=resume) if env.is_main else RunDir(run_path(spec))
    ctx = _build(spec, env, runtime, run, quiet, fresh=not resume)
    if resume and saved is None:
        saved = read_checkpoint(run.checkpoint)
    _tune_cpu(ctx, saved if resume else None)
    if resume:
        ctx.start = restore(ctx, saved)
    if env.is_main:
        open_run_dir(run, spec)
    barrier(env)
    return ctx


def _build(
    spec: JobSpec, env: DistEnv, runtime: Runtime, run: RunDir, quiet: bool, fresh: bool = True
) -> RunContext:
    """Data, task, model, batches and optimizer of ``spec``: reads inputs, writes nothing.
    A ``fresh`` model (not resumed) gets the task's start from the data, if it has one."""
    progress = ProgressReporter(quiet=quiet or not env.is_main)
    loggers = Loggers([progress])
    workload, splits = build_workload(spec, loggers)
    task = workload.task
    _check_metric(spec, task.metric_names)
    seed_everything(spec.seed)
    args = {**workload.model_args, **spec.model.args}
    # DP-SGD's per-sample gradients keep the default layout: auto leaves them alone
    layout = "off" if spec.train.privacy and spec.train.channels_last == "auto" else None
    model = create_model(spec.model.name, **args)
    model = runtime.place_model(model, layout or spec.train.channels_last)
    if fresh and workload.init_model is not None:
        progress.log("starting the model from the training data (one pass, no gradients)")
        workload.init_model(model)
    compiled = torch.compile(model, mode=spec.train.compile_mode) if spec.train.compile else model
    if spec.train.compile:
        progress.log("compiling the model (torch.compile): the first steps take longer")
    step_model = wrap_model(compiled, env, runtime.device)
    ctx_batches = _batches(spec, workload, env, runtime.device)
    optimizer, scheduler = _optimization(spec, model, runtime.device, len(ctx_batches["train"]))
    step_model, optimizer, privacy = _private(spec, model, step_model, optimizer, ctx_batches, env)
    if privacy is None and env.world_size == 1 and not spec.train.compile:
        runtime.step_rows_sparse(model, optimizer)
    meta = _package_meta(spec, workload, args, splits)
    ctx = RunContext(
        spec,
        env,
        runtime,
        run,
        model,
        step_model,
        task,
        **ctx_batches,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=runtime.grad_scaler(),
        log=MetricsLog(run.metrics_file, enabled=env.is_main),
        progress=progress,
        loggers=loggers,
        package_meta=meta,
        save_assets=_assets(workload, model),
        privacy=privacy,
        average=create_average(spec.train.average_last, spec.train.epochs),
    )
    ctx.info.update(
        train_size=workload.sizes["train"],
        eval_size=workload.sizes["eval"],
        test_size=workload.sizes["test"],
        source=splits.source,
        split=splits.split,
        parameters=_count(model),
    )
    for note in workload.notes:
        progress.log(f"warning: {note}")
    ctx.flops_per_sample = flops_per_sample(task, model, workload.train_count)
    return ctx


def _tune_cpu(ctx: RunContext, saved: dict[str, Any] | None) -> None:
    """Threads first (the precision probe and the peaks are measured at that count), the
    host allocator, then ``precision: auto`` on a CPU; each with the reason in the report."""
    threads = ctx.runtime.apply_threads(ctx.spec.train.threads, ctx.info["parameters"])
    ctx.runtime.keep_host_memory()
    if threads.warning():
        ctx.progress.log(f"warning: {threads.warning()}")
    choose_precision(ctx, saved)


def _private(
    spec: JobSpec,
    model: torch.nn.Module,
    step_model: torch.nn.Module,
    optimizer: Any,
    batches: dict[str, Any],
    env: DistEnv,
) -> tuple[torch.nn.Module, Any, Privacy | None]:
    """With ``train.privacy``: DP-SGD's model, optimizer and (in ``batches``) Poisson batches."""
    if spec.train.privacy is None:
        return step_model, optimizer, None
    parts = make_private(
        spec.train.privacy,
        model,
        optimizer,
        batches["train"],
        seed=spec.seed,
        total_steps=_total_steps(spec, len(batches["train"])),
        world_size=env.world_size,
    )
    batches["train"] = parts.train
    return parts.step_model, parts.optimizer, parts.privacy


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _total_steps(spec: JobSpec, batches_per_epoch: int) -> int:
    per_epoch = math.ceil(batches_per_epoch / spec.train.grad_accum)
    total = per_epoch * spec.train.epochs
    return min(total, spec.train.max_steps) if spec.train.max_steps else total


def _package_meta(
    spec: JobSpec, workload: Workload, args: dict[str, Any], splits: Any
) -> dict[str, Any]:
    return {
        "task": spec.task,
        **workload.package_meta,
        "model": {"name": spec.model.name, "args": args},
        "data": {
            "spec": spec.data.model_dump(mode="json"),
            "source": splits.source,
            "split": splits.split,
        },
    }


_CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "scaler", "rng", "state")


def read_checkpoint(path: Path) -> dict[str, Any]:
    """``last.pt`` with every part a resume needs, or one line saying what is missing."""
    ckpt = load_checkpoint(path)
    missing = [k for k in _CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        raise TensorfabError(f"{path}: not a readable checkpoint (no {', '.join(missing)})")
    return ckpt


def _finished(state: TrainState, spec: JobSpec) -> str | None:
    t = spec.train
    return state.finished(t.epochs, t.max_steps, t.early_stopping.patience)


def restore(ctx: RunContext, saved: dict[str, Any] | None = None) -> TrainState:
    """Load ``last.pt`` (or ``saved``, read from it) into the context; cut the metrics log.

    ``check_run_dir`` has made sure the file exists: ``--resume`` never starts afresh.
    """
    ckpt = saved if saved is not None else read_checkpoint(ctx.run.checkpoint)
    _load_states(ctx, ckpt)
    _load_privacy(ctx, ckpt)
    _load_average(ctx, ckpt)
    set_rng_state(ckpt["rng"])
    state = TrainState.from_dict(ckpt["state"])
    ctx.log.truncate_after(state.global_step)
    if _finished(state, ctx.spec):
        ctx.progress.log(
            f"run {ctx.run.path} ended training at step {state.global_step}; "
            "writing its missing report"
        )
    else:
        ctx.progress.log(
            f"resuming {ctx.run.path} from step {state.global_step} "
            f"(epoch {state.epoch + 1}, batch {state.batch_in_epoch})"
        )
    return state


def _load_average(ctx: RunContext, ckpt: dict[str, Any]) -> None:
    """The running average of ``train.average_last``; it restarts (with a warning) when the
    checkpoint averaged another window (``--resume`` with more epochs)."""
    if ctx.average is None or "average" not in ckpt:
        return
    if not ctx.average.load_state_dict(ckpt["average"], ctx.runtime.device):
        a, b = ckpt["average"]["window"]
        ctx.progress.log(
            f"warning: the checkpoint averaged epochs {a}-{b}; train.average_last now "
            f"averages epochs {ctx.average.window[0]}-{ctx.average.window[1]}: it restarts"
        )


def _saved_report(run: RunDir) -> dict[str, Any] | None:
    try:
        report = json.loads((run.path / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None


def _complete_line(run: RunDir, state: TrainState, spec: JobSpec, status: str) -> str:
    where = f"epoch {state.epoch}/{spec.train.epochs}, step {state.global_step}"
    if status == "early-stopped":
        where = f"stopped early at {where}; raise train.early_stopping.patience to continue"
    elif status == "max-steps":
        where = f"train.max_steps={spec.train.max_steps} reached at {where}"
    return f"run {run.path} is already complete ({where}); nothing to do"


def completed_run(spec: JobSpec, saved: dict[str, Any]) -> RunResult | None:
    """The finished run that ``--resume`` of ``spec`` would find, or None if work is left.

    "Complete" needs two facts, each written by the engine in order at the end of a run:
    the checkpoint's state has met the loop's end conditions under ``spec`` (the last
    checkpoint is written after the last evaluation), and ``report.json`` holds that same
    step (the report is the run's last write). A crash between the two leaves a finished
    checkpoint without its report: that run is not complete, and ``--resume`` writes the
    report without training (``fit`` returns at once). Neither a marker file of its own
    nor the planned step count is needed: the state already says how the loop would end,
    and a raised limit (``--set train.epochs=<more>``) extends the run as resuming did.
    Reads only: a complete run's directory is left exactly as it was.
    """
    run = RunDir(run_path(spec))
    state = TrainState.from_dict(saved["state"])
    status = _finished(state, spec)
    report = _saved_report(run)
    if status is None or report is None or report.get("steps") != state.global_step:
        return None
    line = _complete_line(run, state, spec, status)
    return RunResult(run.path, "already-complete", report, dist_env_from_environ().is_main, line)


def _load_states(ctx: RunContext, ckpt: dict[str, Any]) -> None:
    """Model, optimizer, schedule and scaler from ``ckpt``; a mismatch is one clear line."""
    try:
        ctx.model.load_state_dict(ckpt["model"])
        ctx.optimizer.load_state_dict(ckpt["optimizer"])
        ctx.scheduler.load_state_dict(ckpt["scheduler"])
        ctx.scaler.load_state_dict(ckpt["scaler"])
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TensorfabError(
            f"{ctx.run.checkpoint}: checkpoint does not fit this run's model or optimizer ({first})"
        ) from None


def _load_privacy(ctx: RunContext, ckpt: dict[str, Any]) -> None:
    """DP-SGD's accountant and noise generator; a run must resume as it started."""
    if ctx.privacy is None and "privacy" not in ckpt:
        return
    if ctx.privacy is None or "privacy" not in ckpt:
        had = "was" if "privacy" in ckpt else "was not"
        raise TensorfabError(
            f"{ctx.run.checkpoint}: the run {had} trained with train.privacy; "
            "resume it with the spec it started with"
        )
    ctx.privacy.load_state_dict(ckpt["privacy"])


def open_loggers(ctx: RunContext, state: TrainState) -> None:
    """The main rank's side channels beside the progress display: TensorBoard, MLflow."""
    if not ctx.env.is_main:
        return
    ctx.loggers.loggers.append(
        TensorBoardLogger(ctx.run.path / "tb", purge_step=state.global_step or None)
    )
    uri = ctx.spec.output.mlflow
    if uri is not None:
        from tensorfab.engine.mlflow_logger import MlflowLogger

        ctx.loggers.loggers.append(MlflowLogger(uri, ctx.spec.name, ctx.run.path.name))
    ctx.loggers.log_config(flatten(ctx.spec.model_dump(mode="json")))


def _after_eval(ctx: RunContext, state: TrainState, record: dict[str, Any]) -> bool:
    """Best-model tracking and early stopping; True when training should stop."""
    spec = ctx.spec.train
    value = metric_value(record, spec.metric)
    if state.improved(value, spec.metric_mode, spec.early_stopping.min_delta):
        state.best_value, state.best_epoch, state.bad_evals = value, record["epoch"], 0
        save_best(ctx, record, {"epoch": record["epoch"], "step": record["step"]})
    else:
        state.bad_evals += 1
    patience = spec.early_stopping.patience
    return patience is not None and state.bad_evals >= patience


def fit(ctx: RunContext, state: TrainState) -> str:
    """Run epochs from ``state`` to the end; returns how training ended."""
    spec = ctx.spec.train
    ended = _finished(state, ctx.spec)
    if ended:  # resumed after the last checkpoint: only the report is left to write
        return ended
    with stop_on_signals() as stop:
        while state.epoch < spec.epochs:
            ctx.loggers.start_epoch(
                state.epoch + 1, spec.epochs, len(ctx.train), state.batch_in_epoch
            )
            more = train_epoch(ctx, state, stop)
            record = evaluate_epoch(ctx, state)
            stop_early = _after_eval(ctx, state, record)
            if ctx.average is not None and ctx.average.wants(record["epoch"]):
                ctx.average.update(ctx.model, record["epoch"])
            ctx.loggers.end_epoch(_epoch_summary(record, spec.metric))
            state.epoch += 1
            state.batch_in_epoch = 0
            state.epoch_loss_sum, state.epoch_batches = 0.0, 0
            checkpoint(ctx, state)
            if stop_early:
                return "early-stopped"
            if not more:
                return "max-steps"
    return "completed"


def _epoch_summary(record: dict[str, Any], metric: str) -> str:
    value = metric_value(record, metric)
    return (
        f"train loss {record['train_loss']:.4f}  eval loss {record['eval_loss']:.4f}  "
        f"{metric} {value:.4f}"
    )


def train(
    spec: JobSpec,
    *,
    resume: bool = False,
    quiet: bool = False,
    profile: bool = False,
    on_checkpoint: Callable[[RunContext, TrainState], None] | None = None,
) -> RunResult:
    """Train ``spec`` to the end (or resume it) and write the whole run directory.

    ``resume`` of a run that is already complete changes nothing and returns its report
    with status ``already-complete`` (a scheduler may requeue a job that had finished).
    ``profile`` records a few training steps with torch.profiler into ``profile/``.
    ``on_checkpoint`` runs on every rank after each checkpoint (Ray Train's report).
    torch's intra-op thread count, set for the run (``train.threads``), is given back
    afterwards: a notebook's next cell runs with the count it had. (glibc's malloc
    settings, hardware/host_memory.py, stay for the process: glibc cannot read them back.)
    """
    with kept_threads():
        return _train(spec, resume=resume, quiet=quiet, profile=profile, hook=on_checkpoint)


def _train(
    spec: JobSpec,
    *,
    resume: bool,
    quiet: bool,
    profile: bool,
    hook: Callable[[RunContext, TrainState], None] | None,
) -> RunResult:
    started = time.perf_counter()
    saved = None
    if resume:
        saved = read_checkpoint(check_run_dir(spec, resume=True).checkpoint)
        done = completed_run(spec, saved)
        if done is not None:
            return done
    ctx = setup(spec, resume=resume, quiet=quiet, saved=saved)
    ctx.on_checkpoint = hook
    failed = True
    try:
        state = ctx.start
        open_loggers(ctx, state)
        where = ctx.run.path / "profile" if profile and ctx.env.is_main else None
        with profiled(where, ctx.runtime.device) as prof:
            if prof is not None:
                ctx.train = ProfiledBatches(ctx.train, prof)
            status = fit(ctx, state)
        evaluate_average(ctx, state)
        report = finish_run(ctx, state, status, started)
        if ctx.env.is_main:
            ctx.loggers.finish(ctx.run.path, report)
        failed = False
    finally:
        ctx.loggers.close(failed)
        shutdown_distributed()
    return RunResult(ctx.run.path, status, report, is_main=ctx.env.is_main)
