"""The host's time per step, measured on the workload itself.

The same step (the same modules and their Python, hooks, mask preparation, autograd, the
optimizer) runs on PyTorch's ``meta`` device: every op is dispatched and infers its
output's shape, never computes data. Its thread CPU time is what this CPU's host spends
on the step apart from running kernels; a GPU adds the launch of each kernel
(``launch_us`` in constants.yaml, model.py). What the meta device does differently, and
how it is handled:

* PyTorch replaces most C++ meta kernels by Python ones (``torch._meta_registrations``,
  made for tracing): ~150 us an op instead of ~2. The step runs in a forked child that
  removes them, so the C++ shape inference a GPU's dispatch also does runs; ops with no
  C++ meta kernel keep their Python one, timed, and priced like a C++-dispatched op
  (measured in the child) instead.
* reading a value back (``.item()``, a tensor in an ``if``) answers a neutral value (0.0
  for a float: a finite loss; 1 for an integer; False for a boolean).
* autocast (no meta autocast exists) and fused optimizers (no meta kernel): the step runs
  in fp32 with a foreach optimizer; the ops autocast adds (casts) are priced from the
  recorded step's op count (model.py).
* anything else that raises, or no ``fork`` (not Linux/macOS): the caller falls back to
  ``host_op_us`` of constants.yaml per op and says so in the profile's notes.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import select
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tensorfab.advise.record import OpRecorder

META = torch.device("meta")
REPEATS = 3  # timed meta steps; the least is kept (the machine is shared)
CHILD_TIMEOUT_S = 300.0  # a measuring child that takes longer is killed (the fallback is used)


@dataclass(frozen=True)
class HostCost:
    """One meta step: thread CPU seconds with Python meta kernels' time replaced by a
    C++ dispatch each, the ops it dispatched, and the per-op C++ dispatch cost used."""

    step_s: float
    ops: int
    python_meta_ops: int
    dispatch_us: float
    switches: int = -1  # involuntary context switches during the kept run (-1: unknown)


def meta_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose parameters and buffers live on the meta device (no data
    is copied: each tensor is replaced by an empty meta one of its shape and dtype)."""
    memo: dict[int, Any] = {}
    for t in [*module.parameters(), *module.buffers()]:
        empty = torch.empty_like(t, device=META)
        memo[id(t)] = nn.Parameter(empty, t.requires_grad) if isinstance(t, nn.Parameter) else empty
    return copy.deepcopy(module, memo)


def to_meta(tensors: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(t.to(META) for t in tensors)


def _neutral(t: torch.Tensor) -> bool | int | float:
    if t.dtype == torch.bool:
        return False
    return 0.0 if t.is_floating_point() or t.is_complex() else 1


@contextlib.contextmanager
def scalar_reads() -> Iterator[None]:
    """While inside, ``.item()`` of a meta tensor answers a neutral value instead of
    raising (registered for this block only)."""
    lib = torch.library.Library("aten", "IMPL")  # removed on exit
    try:
        lib.impl("_local_scalar_dense", _neutral, "Meta")
        yield
    finally:
        lib._destroy()


class _PythonMeta:
    """Time spent in, and calls of, the Python meta kernels left in place."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.depth = 0  # a Python meta kernel may dispatch ops: only the outermost counts

    def timed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            self.depth += 1
            t0 = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.depth -= 1
                if self.depth == 0:
                    self.seconds += time.thread_time() - t0
                    self.calls += 1

        return run


def _python_meta_table() -> dict[Any, Callable[..., Any]]:
    """aten ops and the Python meta kernels ``torch._meta_registrations`` gives them."""
    from torch._decomp import global_decomposition_table

    table: dict[Any, Callable[..., Any]] = {}
    for kind in ("meta", "post_autograd", "pre_autograd"):
        for op, fn in global_decomposition_table[kind].items():
            if isinstance(op, torch._ops.OpOverload) and op.namespace == "aten":
                table.setdefault(op, fn)
    return table


def _has(op: Any, key: str) -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), key)


# an op with a kernel for one of these runs on meta without a Python meta kernel (a
# CompositeExplicitAutograd op may not: convolution's goes to convolution_overrideable)
_CPP_KEYS = ("Meta", "CompositeImplicitAutograd")


def use_cpp_meta_kernels(python: _PythonMeta) -> torch.library.Library:
    """Drop PyTorch's Python meta kernels (for the forked child only: never restored);
    ops with no C++ meta kernel get their Python one back, timed by ``python``."""
    import torch._meta_registrations as registrations

    registrations._meta_lib_dont_use_me_use_register_meta._destroy()
    lib = torch.library.Library("aten", "IMPL", "Meta")
    for op, fn in _python_meta_table().items():
        if op.is_view or any(_has(op, key) for key in _CPP_KEYS):
            continue
        with contextlib.suppress(RuntimeError):
            lib.impl(op, python.timed(fn))
    return lib


def least_thread_s(step: Callable[[], Any], repeats: int) -> float:
    """The least thread CPU time of ``repeats`` calls: on a shared machine, the run that
    other processes disturbed least."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.thread_time()
        step()
        best = min(best, time.thread_time() - t0)
    return best


def cpp_dispatch_us(repeats: int = 200) -> float:
    """Thread CPU microseconds of one meta op dispatched to a C++ meta kernel (an add of
    two 64 x 64 tensors): what an op with no C++ meta kernel is priced at."""
    x = torch.empty(64, 64, device=META)
    return least_thread_s(lambda: [x + x for _ in range(repeats)], 5) * 1e6 / repeats


def involuntary_switches() -> int:
    """Times the scheduler took this thread off the CPU so far (-1 where the system does
    not say): each costs a step thread CPU time (caches refilled), which least-of-N keeps
    when every run is preempted (docs/advise.md, benchmarks/advise_host_noise.py)."""
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw
    except (ImportError, AttributeError, OSError):
        return -1


def _least_host_s(
    step: Callable[[], Any], python: _PythonMeta, repeats: int
) -> tuple[float, int, int]:
    """The least, over ``repeats`` steps, of a step's thread CPU time minus the time its
    Python meta kernels took (paired per step: the two vary together), their count, and
    the involuntary context switches that run suffered."""
    best, calls, switches = float("inf"), 0, -1
    for _ in range(repeats):
        python.seconds, python.calls = 0.0, 0
        before = involuntary_switches()
        t0 = time.thread_time()
        step()
        seconds = time.thread_time() - t0 - python.seconds
        if seconds < best:
            best, switches = seconds, involuntary_switches() - before if before >= 0 else -1
        calls = python.calls
    return best, calls, switches


def measure(step: Callable[[], Any], repeats: int = REPEATS) -> HostCost:
    """Run a meta ``step`` once, counting its ops (the optimizer makes its state), then
    keep the least thread CPU time of ``repeats`` runs, with the Python meta kernels' time
    replaced by a C++ dispatch each. Call in the forked child (``use_cpp_meta_kernels``)."""
    python = _PythonMeta()
    _lib = use_cpp_meta_kernels(python)
    dispatch_us = cpp_dispatch_us()
    with scalar_reads():
        recorder = OpRecorder()
        with recorder:  # the warm-up: its ops are counted (the optimizer's state is made)
            step()
        outside, calls, switches = _least_host_s(step, python, repeats)
    del _lib
    host_s = outside + calls * dispatch_us * 1e-6
    return HostCost(max(host_s, 0.0), len(recorder.ops), calls, dispatch_us, switches)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:160]


def _child(step: Callable[[], Any], out: int) -> None:
    try:
        payload = {"cost": measure(step).__dict__}
    except Exception as e:  # anything the meta device cannot run: reported, not raised
        payload = {"error": _first_line(e)}
    os.write(out, json.dumps(payload).encode())


def _read_all(fd: int, pid: int, timeout_s: float) -> bytes:
    """What the child writes until it closes the pipe; after ``timeout_s`` the child is
    killed and what came so far is returned."""
    chunks, deadline = [], time.monotonic() + timeout_s
    while True:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            os.kill(pid, signal.SIGKILL)
            return b""
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def measure_forked(make_step: Callable[[], Callable[[], Any]]) -> dict[str, Any]:
    """``measure(make_step())`` in a forked child (whose meta kernels it changes);
    ``{"cost": ...}`` or ``{"error": why}``. The step is made here: a forked child's first
    CPU kernels wait long for the intra-op thread pool it inherited."""
    if not hasattr(os, "fork"):
        return {"error": "no fork on this system"}
    try:
        step = make_step()
    except Exception as e:  # a model that cannot be copied to meta
        return {"error": _first_line(e)}
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, answer, leave without running any cleanup
        os.close(read)
        try:
            _child(step, write)
        finally:
            os._exit(0)
    os.close(write)
    try:
        data = _read_all(read, pid, CHILD_TIMEOUT_S)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    return json.loads(data) if data else {"error": "the measuring process ended or timed out"}


def host_seconds(cost: HostCost, recorded_ops: int) -> float:
    """Host seconds of the recorded step: the meta step's, plus a C++ dispatch for each op
    the recorded step has beyond it (autocast's casts: meta runs in fp32)."""
    return cost.step_s + max(0, recorded_ops - cost.ops) * cost.dispatch_us * 1e-6


def measure_or_none(make_step: Callable[[], Callable[[], Any]]) -> tuple[HostCost | None, str]:
    """The host cost of the step made by ``make_step``, or None and why not."""
    found = measure_forked(make_step)
    if "error" in found:
        return None, (
            f"host: the step did not run on the meta device ({found['error']}); "
            "the assumed cost per op is used"
        )
    cost = HostCost(**found["cost"])
    python = (
        f"; {cost.python_meta_ops} ops with Python-only meta kernels priced at "
        f"{cost.dispatch_us:.1f} us"
        if cost.python_meta_ops
        else ""
    )
    switched = (
        f"; {cost.switches} involuntary context switches during it: a shared CPU's "
        "preemptions add to this figure"
        if cost.switches > 0
        else ""
    )
    return cost, (
        f"host: {cost.step_s * 1e3:.2f} ms of thread CPU time a step outside kernels, "
        f"measured on this CPU by running the step on the meta device ({cost.ops} ops"
        f"{python}{switched})"
    )
