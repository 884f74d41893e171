"""What a person sees while training: a rich bar on a terminal, log lines otherwise.

``quiet`` shows nothing but errors. Everything goes to stderr so stdout stays data.
"""

from __future__ import annotations

import sys
import time
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

    def log(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, highlight=False, markup=False)

    def start_epoch(self, epoch: int, epochs: int, total_steps: int, done: int = 0) -> None:
        self._label = f"epoch {epoch}/{epochs}"
        if not self.interactive:
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

    def advance(self, step_in_epoch: int) -> None:
        """Move the bar without new numbers (no device sync needed for this)."""
        if self._progress is not None:
            self._progress.update(self._task, completed=step_in_epoch)

    def update(self, step_in_epoch: int, total: int, loss: float, samples_per_s: float) -> None:
        if self._progress is not None:
            self._progress.update(
                self._task, completed=step_in_epoch, loss=f"{loss:.4f}", sps=f"{samples_per_s:,.0f}"
            )
        elif not self.quiet and time.monotonic() - self._last_plain >= 2.0:
            self._last_plain = time.monotonic()
            self.log(
                f"{self._label} step {step_in_epoch}/{total} "
                f"loss {loss:.4f} {samples_per_s:,.0f} samples/s"
            )

    def end_epoch(self, summary: str) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self.log(f"{self._label}: {summary}")
