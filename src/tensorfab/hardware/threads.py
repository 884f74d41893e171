"""How many intra-op CPU threads a run uses: ``train.threads``, or for ``auto`` the job
scheduler's grant, else the cores actually free and the model's size.

PyTorch's default is one thread per core of the machine, whoever else runs there. On a
loaded machine that is the worst choice: OpenMP threads spin waiting for each other while
the other jobs hold the cores (LeNet on digits ran 14x slower with the default than with one
thread, load average 5 on 2 cores: issue 18). And a small model's ops are too short to split.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from tensorfab.errors import TensorfabError

THREADS_ENV = "TENSORFAB_THREADS"  # set by the jobs agent to the cores it gave the job
SMALL_MODEL_PARAMS = 1_000_000  # below: one thread; its ops are too short to split


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    requested: str
    reason: str
    cores: int  # the cores this process may run on (its affinity)
    load_1m: float | None  # the machine's load average over a minute
    busy: bool  # every core of the machine already had a runnable process

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def warning(self) -> str | None:
        """The line to print when the machine is already loaded; None when it is not."""
        if not self.busy:
            return None
        return (
            f"the machine is already loaded (load average {self.load_1m:.1f} on"
            f" {os.cpu_count()} cores): {self.threads} thread(s); this run's speed is not"
            " the machine's"
        )


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), else the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):  # not available on this platform
        return None


def _env_threads(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise TensorfabError(f"{THREADS_ENV}: must be a whole number >= 1, not {value!r}")
    return int(value)


def _auto(cores: int, machine: int, load: float | None, parameters: int) -> tuple[int, str]:
    # the load counts this process too (it has been reading data): one runnable is ours
    free = cores if load is None else max(1, min(cores, round(machine - max(0.0, load - 1.0))))
    where = (
        f"{free} of {cores} cores free (load average {load:.1f} on {machine})"
        if load is not None
        else f"{cores} cores (no load average here)"
    )
    if parameters < SMALL_MODEL_PARAMS:
        return 1, f"a model of {parameters:,} parameters runs on one thread; {where}"
    return free, where


def decide_threads(
    requested: int | str,
    parameters: int,
    *,
    cores: int,
    machine_cores: int,
    load: float | None,
    env: str | None = None,
) -> ThreadChoice:
    """The pure rule: an explicit count wins, then the scheduler's grant, then the free
    cores (one thread for a small model)."""
    busy = load is not None and load >= machine_cores
    if requested != "auto":
        n = int(requested)
        return ThreadChoice(n, str(requested), f"train.threads: {n}", cores, load, busy)
    if env:
        n = _env_threads(env)
        why = f"the job's cores ({THREADS_ENV}={n})"
        return ThreadChoice(n, "auto", why, cores, load, busy)
    n, why = _auto(cores, machine_cores, load, parameters)
    return ThreadChoice(n, "auto", why, cores, load, busy)


def choose_threads(requested: int | str, parameters: int) -> ThreadChoice:
    """``decide_threads`` on this machine, now."""
    return decide_threads(
        requested,
        parameters,
        cores=usable_cores(),
        machine_cores=os.cpu_count() or 1,
        load=load_average(),
        env=os.environ.get(THREADS_ENV),
    )


@contextlib.contextmanager
def kept_threads(count: int | None = None) -> Iterator[None]:
    """torch's intra-op thread count set to ``count`` (None: left as it is) inside, and
    the caller's count given back after: a run, a timing or a profile sets it for itself,
    and a notebook's next cell runs with what it had."""
    import torch  # here: the jobs agent reads this module without torch

    before = torch.get_num_threads()
    try:
        if count is not None:
            torch.set_num_threads(count)
        yield
    finally:
        torch.set_num_threads(before)
