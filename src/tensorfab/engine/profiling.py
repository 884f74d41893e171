"""``--profile``: where a training step's time goes, from torch.profiler, into the run.

The profiler watches a few training steps after a warm-up (``schedule``: skip ``WAIT``
steps, warm up one, record ``ACTIVE``), stepped by the batch source itself
(:class:`ProfiledBatches` wraps it as the bench's meter does), so the loop is unchanged.
It writes ``profile/trace.json`` (open in Perfetto or chrome://tracing) and
``profile/top_ops.md``: the ops by self CPU time (and CUDA time on a GPU), the table to read
first.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, schedule

from tensorfab.files import atomic_path, write_text_atomic

WAIT, WARMUP, ACTIVE = 2, 1, 5
TOP_OPS = 25


class ProfiledBatches:
    """A batch source (``epoch(epoch, start)``, ``len``) that steps the profiler per batch."""

    def __init__(self, inner: Any, prof: Any) -> None:
        self.inner, self.prof = inner, prof

    def __len__(self) -> int:
        return len(self.inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Any]:
        for batch in self.inner.epoch(epoch, start_batch):
            yield batch
            self.prof.step()


def top_ops_table(prof: Any, device: torch.device) -> str:
    """The profiled steps' ops, most self time first, as a markdown block."""
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=TOP_OPS)
    steps = f"steps {WAIT + WARMUP + 1}-{WAIT + WARMUP + ACTIVE} of the run"
    return f"# top ops by {sort} ({steps}, {device})\n\n```\n{table}\n```\n"


def _writer(out_dir: Path, device: torch.device) -> Any:
    def write(prof: Any) -> None:
        with atomic_path(out_dir / "trace.json") as tmp:
            prof.export_chrome_trace(str(tmp))
        write_text_atomic(out_dir / "top_ops.md", top_ops_table(prof, device))

    return write


@contextlib.contextmanager
def profiled(out_dir: Path | None, device: torch.device) -> Iterator[Any]:
    """A running profiler writing into ``out_dir``; None (and no profiler) without one."""
    if out_dir is None:
        yield None
        return
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(
        activities=activities,
        schedule=schedule(wait=WAIT, warmup=WARMUP, active=ACTIVE, repeat=1),
        on_trace_ready=_writer(out_dir, device),
    ) as prof:
        yield prof
