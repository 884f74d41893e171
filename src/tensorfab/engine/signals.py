"""Pre-emption: SIGINT/SIGTERM set a flag; the loop saves a checkpoint and stops cleanly."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class StopFlag:
    def __init__(self) -> None:
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None

    def set(self, signum: int, _frame: FrameType | None = None) -> None:
        self.signum = signum


@contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """Install SIGINT/SIGTERM handlers for the duration of training (main thread only)."""
    flag = StopFlag()
    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, flag.set)
    except ValueError:  # not the main thread: leave signals alone
        previous = {}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
