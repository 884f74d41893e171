"""A workload's profile, measured on the CPU without a GPU: per-op costs, kernels, memory.

A real training step (the engine's own ``train_step``: task loss, autocast, scaler,
clipping, optimizer, scheduler) runs twice on the CPU under :class:`OpRecorder`, on the
first 2 and 3 examples of a representative batch, on a fresh copy of the model after one
warm-up step (the optimizer's state exists, as in every later step). Every op's FLOPs
and bytes are a straight line in the batch size through those two points, so the profile
answers for any batch size without running it (kernel count and host ops do not grow with
the batch); the peak memory is such a line too. The precision is the one the GPU would
run: autocast to bf16/fp16 on the CPU gives the same op list (casts included) and the
same tensor sizes. Only the first rows of the training split are prepared (the batches
looked at); the host's time outside kernels is measured on the meta device (host.py).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import torch

from tensorfab.advise.host import host_seconds, measure_or_none, meta_copy, to_meta
from tensorfab.advise.record import OpRecord, OpRecorder
from tensorfab.engine.fit import train_step
from tensorfab.engine.optim import create_optimizer, create_scheduler
from tensorfab.engine.runtime import Runtime
from tensorfab.engine.telemetry import flops_per_sample
from tensorfab.engine.train import build_workload
from tensorfab.errors import TensorfabError
from tensorfab.hardware.threads import kept_threads
from tensorfab.models import create_model
from tensorfab.spec import JobSpec
from tensorfab.tasks import Placement
from tensorfab.tasks.base import TRAIN_FLOPS_FACTOR

PROBE_SIZES = (2, 3)  # the two batch sizes a step is recorded at (1 takes special paths)
_BATCHES_LOOKED_AT = 24  # batches timed (host input) and searched for a median-sized one
CPU = torch.device("cpu")
_FEW = 64  # evaluation and test rows loaded (the profile does not use them)


@dataclass(frozen=True)
class OpLine:
    """One op's cost as a line in the batch size B: value(B) = fixed + per_sample * B."""

    name: str
    dtype: str
    kernels: int
    flops: tuple[float, float]  # (fixed, per sample)
    bytes: tuple[float, float]
    depth: int = 0  # a convolution's reduction depth (record.conv_depth): its CPU share
    gemm: tuple[tuple[float, float], ...] = ()  # a matrix product's M, N, K: lines in B
    layout: str = ""  # a convolution's memory format and kernel (record.conv_layout)
    pixels: int = 0  # a convolution's output positions per image (record.conv_pixels)

    def at(self, batch: int) -> tuple[float, float]:
        """(FLOPs, bytes) at batch size ``batch``, never below zero."""
        f = self.flops[0] + self.flops[1] * batch
        b = self.bytes[0] + self.bytes[1] * batch
        return max(f, 0.0), max(b, 0.0)

    def gemm_at(self, batch: int) -> tuple[float, ...]:
        """A matrix product's (M, N, K) at batch size ``batch`` (() for other ops)."""
        return tuple(max(fixed + per * batch, 1.0) for fixed, per in self.gemm)


@dataclass(frozen=True)
class Profile:
    """What a step of a workload needs, at any batch size."""

    name: str
    kind: str  # train | infer
    precision: str  # what the ops were recorded in: fp32 | bf16 | fp16
    batch_size: int
    ops: tuple[OpLine, ...]
    memory_curve: tuple[tuple[float, float], ...]  # bytes held after each op: lines in B
    memory_start: tuple[float, float]  # held before the step (weights, state, batch): a line
    host_ops: int  # dispatched ops per step, views included: each costs host time
    syncs: int  # ops that wait for the device (loss.item())
    host_input_s: float  # making one batch on the host, measured on this CPU
    samples_per_epoch: int  # training samples an epoch sees (one batch for a named workload)
    epochs: int
    model_flops_per_sample: float | None  # the task's count (real tokens), one step
    params: int
    notes: tuple[str, ...] = field(default_factory=tuple)
    host_s: float | None = None  # host seconds a step outside kernels, measured (host.py)

    def steps_per_epoch(self) -> int:
        return max(1, -(-self.samples_per_epoch // self.batch_size))

    def kernels(self) -> int:
        return sum(op.kernels for op in self.ops)

    def memory_at(self, batch: int) -> float:
        """The step's peak bytes at ``batch``: the highest point of the memory curve."""
        return max(fixed + per * batch for fixed, per in self.memory_curve)

    def largest_batch(self, room_bytes: float) -> int | None:
        """The largest batch whose peak stays within ``room_bytes`` (0: not even one; None:
        no limit, when no point of the memory curve grows with the batch)."""
        if any(fixed + per > room_bytes for fixed, per in self.memory_curve):
            return 0
        caps = [(room_bytes - fixed) / per for fixed, per in self.memory_curve if per > 0]
        return int(min(caps)) if caps else None

    def flops_at(self, batch: int) -> float:
        return sum(op.at(batch)[0] for op in self.ops)

    def with_batch(self, batch: int) -> Profile:
        return replace(self, batch_size=batch)


@dataclass
class Recording:
    """One recorded step: its ops and the peak bytes held during it."""

    ops: list[OpRecord]
    live_after: list[int]  # bytes held after each op
    start_bytes: float  # held before the first op: weights, optimizer state, batch


def optimizer_tensors(optimizer: Any) -> list[torch.Tensor]:
    """The optimizer's state tensors (moments, step counts): held across steps."""
    found = []
    for state in optimizer.state.values():
        found += [v for v in state.values() if isinstance(v, torch.Tensor)]
    return found


def record(
    step: Callable[[], Any], held: Callable[[], Sequence[torch.Tensor]], warm_up: bool = True
) -> Recording:
    """Run ``step`` once unrecorded (the optimizer creates its state; ``warm_up=False``:
    it exists already), then once under an :class:`OpRecorder`: a steady-state step.
    ``held()`` (weights, optimizer state, batch) counts as held from the start, so the
    peak is the whole step's memory."""
    if warm_up:
        step()
    recorder = OpRecorder()
    with recorder:
        recorder.track(list(held()))
        start = recorder.live_bytes
        step()
    return Recording(recorder.ops, recorder.live_after, float(start))


def fit_lines(a: Recording, b: Recording, sizes: tuple[int, int]) -> tuple[OpLine, ...]:
    """Per-op lines through two recordings at two batch sizes (same ops, same order)."""
    names_a = [op.name for op in a.ops]
    if names_a != [op.name for op in b.ops]:
        raise TensorfabError(
            "advise: the step ran different ops at batch sizes "
            f"{sizes[0]} and {sizes[1]}; a data-dependent model cannot be profiled this way"
        )
    span = sizes[1] - sizes[0]
    lines = []
    for x, y in zip(a.ops, b.ops, strict=True):
        per_f, per_b = (y.flops - x.flops) / span, (y.bytes - x.bytes) / span
        fixed = (x.flops - per_f * sizes[0], x.bytes - per_b * sizes[0])
        gemm = tuple(_line(p, q, sizes) for p, q in zip(x.gemm, y.gemm, strict=True))
        lines.append(
            OpLine(
                x.name,
                x.dtype,
                x.kernels,
                (fixed[0], per_f),
                (fixed[1], per_b),
                x.depth,
                gemm,
                x.layout,
                x.pixels,
            )
        )
    return tuple(lines)


def _line(a: float, b: float, sizes: tuple[int, int]) -> tuple[float, float]:
    """(fixed, per sample) of a value that is ``a`` at batch sizes[0] and ``b`` at sizes[1]."""
    per = (b - a) / (sizes[1] - sizes[0])
    return a - per * sizes[0], per


def start_line(a: Recording, b: Recording, sizes: tuple[int, int]) -> tuple[float, float]:
    """Bytes held before the step, as a line in the batch size."""
    per = (b.start_bytes - a.start_bytes) / (sizes[1] - sizes[0])
    return a.start_bytes - per * sizes[0], per


def memory_lines(a: Recording, b: Recording, sizes: tuple[int, int]) -> tuple:
    """The memory curve as lines in the batch size, point by point (the peak moves: at a
    small batch it is the optimizer's, at a large one the end of the forward pass)."""
    span = sizes[1] - sizes[0]
    lines = []
    for x, y in zip(a.live_after, b.live_after, strict=True):
        per = (y - x) / span
        lines.append((x - per * sizes[0], per))
    return tuple(lines)


def _rows(batch: tuple[torch.Tensor, ...], n: int) -> tuple[torch.Tensor, ...]:
    return tuple(t[:n].clone() for t in batch)  # own storage: not the whole batch's


def _representative(batches: Any) -> tuple[tuple[torch.Tensor, ...], float]:
    """A batch of median size among the first ones of epoch 0, and the least seconds the
    host took to make one (the least disturbed by other work: this machine is shared).
    The batches are made on one intra-op thread, as every other part of the profile is
    timed: with two, a loaded 2-core machine made the same batch in 0.4 to 5.5 ms."""
    seen, seconds = [], []
    with one_thread():
        it = iter(batches.epoch(0))
        for _ in range(_BATCHES_LOOKED_AT):
            t0 = time.perf_counter()
            batch = next(it, None)
            if batch is None:
                break
            seconds.append(time.perf_counter() - t0)
            seen.append(batch)
    if not seen:
        raise TensorfabError("data: the training split makes no batch")
    seen.sort(key=lambda b: sum(t.numel() for t in b))
    return seen[len(seen) // 2], min(seconds)


def _sampled(spec: JobSpec) -> JobSpec:
    """The spec cut to what the profile reads: the first rows of the training split (the
    batches looked at, no more: preparing the whole split costs seconds) and a few
    evaluation and test rows (not used)."""
    rows = _BATCHES_LOOKED_AT * spec.data.batch_size
    cut = {"limit_train": min(spec.data.limit_train or rows, rows)}
    cut |= {k: min(getattr(spec.data, k) or _FEW, _FEW) for k in ("limit_eval", "limit_test")}
    return spec.model_copy(update={"data": spec.data.model_copy(update=cut)})


def epoch_samples(prepared: int, split: dict[str, Any], limit: int | None) -> int:
    """Training samples a full epoch has, from those prepared from the first rows: scaled
    by the rows the cut left out (a task may make several samples of one row), up to the
    spec's own ``limit_train``."""
    cut, full = split.get("train_size"), split.get("train_full_size")
    if not cut or not full:
        return prepared
    full = min(full, limit) if limit is not None else full
    return max(1, round(prepared * full / cut))


def _train_context(
    spec: JobSpec, workload: Any, model: torch.nn.Module, precision: str, fusable: bool = True
) -> Any:
    """What ``train_step`` reads, for a fresh model: the run's optimizer as a GPU runs it
    (fused where the spec fuses on CUDA, else PyTorch's CUDA default, foreach; foreach too
    where ``fusable`` is false: the meta device has no fused kernels)."""
    t = spec.train
    fused = t.fused != "off" and fusable
    optimizer = create_optimizer(
        t.optimizer, model, lr=t.lr, weight_decay=t.weight_decay, momentum=t.momentum, fused=fused
    )
    if not fused:
        for group in optimizer.param_groups:
            group["foreach"] = True
    scheduler = create_scheduler(
        optimizer, t.scheduler, total_steps=1000, warmup_steps=t.warmup_steps
    )
    runtime = Runtime(CPU, precision)
    return SimpleNamespace(
        spec=spec,
        model=model,
        step_model=model,
        runtime=runtime,
        task=workload.task,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=runtime.grad_scaler(),
    )


def _in_precision(ctx: Any, precision: str) -> Any:
    """``ctx`` (model, optimizer, scheduler: their state kept) stepping in ``precision``:
    its own runtime and grad scaler."""
    runtime = Runtime(CPU, precision)
    return SimpleNamespace(**{**vars(ctx), "runtime": runtime, "scaler": runtime.grad_scaler()})


def _record_train(ctx: Any, batch: tuple, precision: str) -> tuple[Recording, Recording]:
    """Steady-state steps at the two probe sizes on ``ctx``'s model: one warm-up step in
    ``precision`` first (the optimizer's state made on the first call, kept for the next
    precisions: the same tensors, not made again; the grad scaler's own state)."""
    ctx = _in_precision(ctx, precision)
    recordings = []
    for n in PROBE_SIZES:
        rows = _rows(batch, n)
        recordings.append(
            record(
                lambda rows=rows: train_step(ctx, rows),
                lambda rows=rows: [
                    *ctx.model.parameters(),
                    *ctx.model.buffers(),
                    *optimizer_tensors(ctx.optimizer),
                    *rows,
                ],
                warm_up=not recordings,
            )
        )
    return recordings[0], recordings[1]


def one_thread() -> contextlib.AbstractContextManager[None]:
    """One intra-op thread while recording: the profile counts ops, it does not time them,
    and on a shared CPU the second thread's spinning only costs time."""
    return kept_threads(1)


class SpecProfiler:
    """Profiles of one job spec, one per precision asked for; the data, model, a
    representative batch and the recording steps' model copy and optimizer are made once
    (``advise`` asks for up to three precisions)."""

    def __init__(self, spec: JobSpec) -> None:
        if spec.train.compile or spec.train.privacy is not None:
            raise TensorfabError(
                "advise: train.compile and train.privacy are not modelled; "
                "set train.compile=false and leave train.privacy out"
            )
        self.spec = spec
        self._trained: Any = None  # the recording steps' model and optimizer (_context)
        self.workload, splits = build_workload(_sampled(spec))
        self.samples_per_epoch = epoch_samples(
            self.workload.sizes["train"], splits.split, spec.data.limit_train
        )
        torch.manual_seed(spec.seed)
        args = {**self.workload.model_args, **spec.model.args}
        self.model = create_model(spec.model.name, **args)
        where = Placement(CPU, spec.seed, resident="off", bucket=spec.data.length_bucketing)
        batches = self.workload.make_batches("train", spec.data.batch_size, True, where)
        self.batch, self.input_s = _representative(batches)
        self.fps = flops_per_sample(self.workload.task, self.model, self.workload.train_count)
        with one_thread():
            self.host, self.host_note = measure_or_none(self._meta_step)

    def _meta_step(self) -> Callable[[], Any]:
        """The same training step on the meta device (fp32, foreach: see advise/host.py)."""
        fresh = meta_copy(self.model).train()
        ctx = _train_context(self.spec, self.workload, fresh, "fp32", fusable=False)
        rows = to_meta(_rows(self.batch, PROBE_SIZES[0]))
        return lambda: train_step(ctx, rows)

    def _context(self) -> Any:
        """One fresh copy of the model with the run's optimizer, made once: every
        precision's recording steps it (its optimizer state is made by the first only)."""
        if self._trained is None:
            fresh = copy.deepcopy(self.model).train()
            self._trained = _train_context(self.spec, self.workload, fresh, "fp32")
        return self._trained

    def __call__(self, precision: str) -> Profile:
        """The training profile in ``precision`` (fp32 | bf16 | fp16; tf32 records as fp32)."""
        spec, recorded = self.spec, precision if precision in ("bf16", "fp16") else "fp32"
        with one_thread():
            a, b = _record_train(self._context(), self.batch, recorded)
        return Profile(
            name=spec.name,
            kind="train",
            precision=recorded,
            batch_size=spec.data.batch_size,
            ops=fit_lines(a, b, PROBE_SIZES),
            memory_curve=memory_lines(a, b, PROBE_SIZES),
            memory_start=start_line(a, b, PROBE_SIZES),
            host_ops=len(a.ops),
            syncs=sum(op.name in ("_local_scalar_dense", "item") for op in a.ops),
            host_input_s=self.input_s,
            samples_per_epoch=self.samples_per_epoch,
            epochs=spec.train.epochs,
            model_flops_per_sample=None if self.fps is None else TRAIN_FLOPS_FACTOR * self.fps,
            params=sum(p.numel() for p in self.model.parameters()),
            notes=(
                f"profiled on a median-sized batch of {len(self.batch[0])} among the first "
                f"{self.workload.sizes['train']} training samples (an epoch: "
                f"{self.samples_per_epoch}); host input time: the fastest of their batches "
                "on this CPU",
                self.host_note,
            ),
            host_s=None if self.host is None else host_seconds(self.host, len(a.ops)),
        )


def profile_spec(spec: JobSpec, precision: str) -> Profile:
    """The training profile of a job spec (its data, model, optimizer, batch size)."""
    return SpecProfiler(spec)(precision)
