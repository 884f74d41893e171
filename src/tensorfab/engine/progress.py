"""What a person sees while training: a rich bar on a terminal, log lines otherwise.

One of the run's loggers (``engine/loggers.py``). Not on a terminal (a log file, a job
queue), it still says what is happening: a line when an epoch or a phase (reading and
tokenizing data, compiling, the final evaluation) starts, then at most one line every
``PLAIN_EVERY_S`` seconds with counts, rate and an ETA, and one when it ends. ``quiet``
shows nothing but errors. Everything goes to stderr so stdout stays data.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

PLAIN_EVERY_S = 10.0  # the most often a plain (non-terminal) progress line is written


def eta_text(done: int, total: int, elapsed_s: float) -> str:
    """``eta 1m 05s`` at the pace so far; ``eta ?`` before anything is done."""
    if done <= 0 or total <= done:
        return "eta ?" if total > done else "eta 0s"
    left = round(elapsed_s * (total - done) / done)
    minutes, seconds = divmod(left, 60)
    return f"eta {minutes}m {seconds:02d}s" if minutes else f"eta {seconds}s"


class ProgressReporter:
    def __init__(self, *, quiet: bool = False, interactive: bool | None = None) -> None:
        self.quiet = quiet
        self.console = Console(stderr=True)
        if interactive is None:
            interactive = sys.stderr.isatty()
        self.interactive = interactive and not quiet
        self._progress: Progress | None = None
        self._task: Any = None
        self._last_plain = 0.0
        self._label = ""
        self._epoch_t0 = time.monotonic()
        self._epoch_done = 0  # steps already done when the epoch (re)started
        self._total = 0  # steps of the epoch
        self._phase: tuple[str, float] | None = None  # (what, start time)

    def log(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, highlight=False, markup=False)

    def _due(self) -> bool:
        """Whether a plain line may be written now (rate limit), and note that it was."""
        if self.quiet or time.monotonic() - self._last_plain < PLAIN_EVERY_S:
            return False
        self._last_plain = time.monotonic()
        return True

    # --- RunLogger ------------------------------------------------------------------------
    def log_config(self, params: dict[str, Any]) -> None:
        del params  # spec.yaml holds it

    def start_epoch(self, epoch: int, epochs: int, total_steps: int, done: int = 0) -> None:
        self._label = f"epoch {epoch}/{epochs}"
        self._epoch_t0, self._epoch_done, self._total = time.monotonic(), done, total_steps
        if not self.interactive:
            self.log(f"{self._label}: {total_steps} steps" + (f", from {done}" if done else ""))
            self._last_plain = time.monotonic()
            return
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[sps]} samples/s"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(
            self._label, total=total_steps, completed=done, loss="-", sps="-"
        )

    def advance(self, batch_in_epoch: int) -> None:
        """Move the bar without new numbers (no device sync needed for this); away from a
        terminal, a line with the step and an ETA when one is due, between logged steps."""
        if self._progress is not None:
            self._progress.update(self._task, completed=batch_in_epoch)
        elif self._total and self._due():
            self.log(
                f"{self._label} step {batch_in_epoch}/{self._total}, {self._eta(batch_in_epoch)}"
            )

    def _eta(self, batch_in_epoch: int) -> str:
        elapsed = time.monotonic() - self._epoch_t0
        return eta_text(batch_in_epoch - self._epoch_done, self._total - self._epoch_done, elapsed)

    def log_step(self, record: dict[str, Any], batch_in_epoch: int, batches: int) -> None:
        loss, sps = record["loss"], record["samples_per_s"]
        if self._progress is not None:
            self._progress.update(
                self._task, completed=batch_in_epoch, loss=f"{loss:.4f}", sps=f"{sps:,.0f}"
            )
        elif self._due():
            self.log(
                f"{self._label} step {batch_in_epoch}/{batches} "
                f"loss {loss:.4f} {sps:,.0f} samples/s, {self._eta(batch_in_epoch)}"
            )

    def log_eval(self, record: dict[str, Any]) -> None:
        del record  # end_epoch prints the summary

    def end_epoch(self, summary: str) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self.log(f"{self._label}: {summary}")

    def phase(self, what: str, done: int, total: int, unit: str) -> None:
        """``what``: 0 of ``total`` starts it, ``total`` ends it; lines in between, timed."""
        if done == 0 or self._phase is None or self._phase[0] != what:
            self._phase = (what, time.monotonic())
            self._last_plain = time.monotonic()
            self.log(f"{what}: {total:,} {unit}")
            return
        elapsed = time.monotonic() - self._phase[1]
        if done >= total:
            self.log(f"{what}: {total:,} {unit} in {elapsed:.1f} s")
            self._phase = None
        elif self._due():
            self.log(f"{what}: {done:,}/{total:,} {unit}, {eta_text(done, total, elapsed)}")

    def finish(self, run_dir: Path, report: dict[str, Any]) -> None:
        del run_dir, report  # the summary table is printed by the report

    def close(self, failed: bool) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
