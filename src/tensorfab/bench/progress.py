"""What a person sees while a benchmark runs: a rich bar per measured stage, on stderr.

A stage is one side of one workload (or one micro measurement). Not on a terminal, each
stage ends in one plain line instead; ``quiet`` shows nothing. stdout stays data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tensorfab.engine.progress import ProgressReporter

Advance = Callable[[], None]


class BenchProgress:
    """Bars on a terminal, one line per stage elsewhere, nothing when quiet."""

    def __init__(self, *, quiet: bool = False, interactive: bool | None = None) -> None:
        # the engine's reporter decides quiet/terminal and owns the stderr console
        self._reporter = ProgressReporter(quiet=quiet, interactive=interactive)
        self.quiet, self.interactive = self._reporter.quiet, self._reporter.interactive
        self.console = self._reporter.console

    def log(self, message: str) -> None:
        self._reporter.log(message)

    @contextmanager
    def stage(self, label: str, total: int) -> Iterator[Advance]:
        """A bar of ``total`` steps; the block gets a function that advances it by one."""
        t0 = time.perf_counter()
        if not self.interactive:
            yield lambda: None
            self.log(f"{label}: {time.perf_counter() - t0:.1f} s")
            return
        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
        )
        with bar:
            task = bar.add_task(label, total=total)
            yield lambda: bar.advance(task)
            bar.update(task, completed=total)
