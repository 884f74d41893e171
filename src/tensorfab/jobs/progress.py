"""A running job's live progress, read from the tail of its run's ``metrics.jsonl``.

The engine appends a ``train`` record per logged step (epoch, step, loss, samples/s, wall
time, planned steps, MFU) and an ``eval`` record per epoch (the task's metrics). The
dashboard shows the last of each and an ETA from the recent pace. The file is being
written while it is read, so only the last ``TAIL_BYTES`` are read, and a half-written or
unreadable line is skipped: a live view never fails on a run's log.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

TAIL_BYTES = 64 * 1024
PACE_RECORDS = 10  # the ETA's pace: the last this many timed train records
NOT_METRICS = ("kind", "epoch", "step", "train_loss", "eval_loss", "epsilon")


@dataclass(frozen=True)
class Progress:
    """What the dashboard shows of a running training job (None: not logged yet)."""

    epoch: int | None = None
    step: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    metric: str | None = None
    metric_value: float | None = None
    samples_per_s: float | None = None
    mfu: float | None = None
    eta_s: float | None = None

    @property
    def fraction(self) -> float | None:
        if not self.step or not self.total_steps:
            return None
        return min(1.0, self.step / self.total_steps)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fraction": self.fraction}


def read_tail(path: Path, max_bytes: int = TAIL_BYTES) -> list[dict[str, Any]]:
    """The JSON objects of the last ``max_bytes`` of a JSON-lines file ([] when missing)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return []
    lines = data.split(b"\n")
    if size > max_bytes:
        lines = lines[1:]  # the first line was cut by the seek
    return [r for r in (_parse(line) for line in lines) if r is not None]


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:  # blank, half-written or not UTF-8
        return None
    return record if isinstance(record, dict) else None


def eta_s(train: list[dict[str, Any]]) -> float | None:
    """Seconds left at the pace of the last train records with a wall time (None: unknown)."""
    timed = [r for r in train if isinstance(r.get("time"), (int, float))][-PACE_RECORDS:]
    if len(timed) < 2 or not timed[-1].get("total_steps"):
        return None
    first, last = timed[0], timed[-1]
    steps, seconds = last["step"] - first["step"], last["time"] - first["time"]
    if steps <= 0 or seconds <= 0:
        return None
    return max(0, last["total_steps"] - last["step"]) * seconds / steps


def _metric(record: dict[str, Any] | None) -> tuple[str | None, float | None]:
    """The evaluation's first task metric (accuracy, f1, ...), beside its losses."""
    for key, value in (record or {}).items():
        if key not in NOT_METRICS and isinstance(value, (int, float)):
            return key, float(value)
    return None, None


def progress_of(records: list[dict[str, Any]]) -> Progress | None:
    """Progress from a run's metrics records, oldest first; None before the first record."""
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    if not train and not evals:
        return None
    last = train[-1] if train else {}
    name, value = _metric(evals[-1] if evals else None)
    return Progress(
        epoch=last.get("epoch", evals[-1]["epoch"] if evals else None),
        step=last.get("step"),
        total_steps=last.get("total_steps"),
        loss=last.get("loss"),
        metric=name,
        metric_value=value,
        samples_per_s=last.get("samples_per_s"),
        mfu=last.get("mfu"),
        eta_s=eta_s(train),
    )


def run_progress(run_dir: str | None) -> Progress | None:
    """The progress of the run in ``run_dir`` (None: no run directory or nothing logged)."""
    if not run_dir:
        return None
    return progress_of(read_tail(Path(run_dir) / "metrics.jsonl"))
