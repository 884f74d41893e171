"""How jobs run: the ``Backend`` protocol and the local process backend.

The daemon starts, signals, polls and adopts jobs only through :class:`Backend`, so the
Ray backend (``jobs/ray_backend.py``) plugs in without touching the policy or the daemon's
loop.

The local backend runs each attempt of a job under its own supervisor process
(``python -m tensorfab.jobs.supervisor JOBDIR``, a session of its own). Liveness is an
``flock`` on ``JOBDIR/running.lock``: the backend takes it before the supervisor exists and
hands the descriptor over, so from before the job's start until the supervisor exits the
lock is held, with no window for a restarted daemon to think a starting job is gone. Signals
go to the job's process group, and only after its pid and start time (``supervisor.json``)
still name the process the supervisor started, so a reused pid is never signalled.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tensorfab.files import write_text_atomic
from tensorfab.jobs.supervisor import (
    EXIT,
    LAUNCH,
    LOCK,
    SUPERVISOR,
    read_json,
    start_ticks,
)


@dataclass(frozen=True)
class Launch:
    """One attempt of a job, as the backend starts it."""

    job_id: int
    attempt: int
    job_dir: Path
    argv: list[str]
    cwd: str
    env: dict[str, str] = field(default_factory=dict)
    cores: list[int] = field(default_factory=list)
    gpus: int = 0  # what the job holds: a backend that reserves resources (Ray) asks for these
    cpus: int = 1


@dataclass(frozen=True)
class Ended:
    """How an attempt ended: the job's exit code (128+N for signal N)."""

    exit_code: int
    started_at: float
    ended_at: float


class Gone:
    """The attempt's supervisor died without writing an exit status (killed, node reboot)."""

    def __repr__(self) -> str:
        return "Gone()"


GONE = Gone()


@dataclass
class Handle:
    """A running attempt as the backend tracks it."""

    job_id: int
    attempt: int
    job_dir: Path
    process: Any = None  # the supervisor's Popen when this backend started it


class Backend(Protocol):
    """Start, signal, poll and adopt jobs; the daemon knows nothing else of how they run."""

    def start(self, launch: Launch) -> Handle: ...

    def signal(self, handle: Handle, signum: int) -> bool: ...

    def poll(self, handle: Handle) -> Ended | Gone | None: ...

    def adopt(self, job_id: int, attempt: int, job_dir: Path) -> Handle | None: ...


def _lock_free(job_dir: Path) -> bool:
    """True when no supervisor holds the job's lock (none is alive)."""
    try:
        fd = os.open(job_dir / LOCK, os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing drops a lock taken here
    return True


def _same_process(pid: int | None, ticks: int | None) -> bool:
    return bool(pid) and ticks is not None and start_ticks(int(pid or 0)) == ticks


class LocalBackend:
    """Jobs as local processes under a per-job supervisor."""

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python

    def start(self, launch: Launch) -> Handle:
        job_dir = launch.job_dir
        job_dir.mkdir(parents=True, exist_ok=True)
        for stale in (EXIT, SUPERVISOR):
            (job_dir / stale).unlink(missing_ok=True)
        record = {
            "job_id": launch.job_id,
            "attempt": launch.attempt,
            "argv": launch.argv,
            "cwd": launch.cwd,
            "env": launch.env,
            "cores": launch.cores,
        }
        write_text_atomic(job_dir / LAUNCH, json.dumps(record, indent=2))
        fd = os.open(job_dir / LOCK, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with open(job_dir / "supervisor.log", "ab") as log:
                process = subprocess.Popen(
                    [self.python, "-m", "tensorfab.jobs.supervisor", str(job_dir)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    pass_fds=(fd,),
                    start_new_session=True,
                )
        finally:
            os.close(fd)  # the supervisor's copy keeps the lock
        return Handle(launch.job_id, launch.attempt, job_dir, process)

    def signal(self, handle: Handle, signum: int) -> bool:
        """Send ``signum`` to the job's process group; False when it is not there (yet)."""
        info = read_json(handle.job_dir / SUPERVISOR)
        if not info or info.get("attempt") != handle.attempt:
            return False
        pid, ticks = info.get("child_pid"), info.get("child_start_ticks")
        if not _same_process(pid, ticks):
            return False
        try:
            os.killpg(int(pid), signum)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def poll(self, handle: Handle) -> Ended | Gone | None:
        """None while the attempt runs; how it ended once it has."""
        if handle.process is not None:
            handle.process.poll()  # reap the supervisor we started
        ended = _read_exit(handle.job_dir, handle.attempt)
        if ended is not None:
            return ended
        if not _lock_free(handle.job_dir):
            return None
        # the supervisor may have written the file just before it exited
        ended = _read_exit(handle.job_dir, handle.attempt)
        if ended is not None:
            return ended
        self._kill_orphan(handle)
        return GONE

    def adopt(self, job_id: int, attempt: int, job_dir: Path) -> Handle | None:
        """Take over an attempt a previous daemon started; None when nothing of it is left.

        Adopted while its supervisor holds the lock and its recorded pid and start time
        still name a live process, or when its exit status is already written.
        """
        if _read_exit(job_dir, attempt) is not None:
            return Handle(job_id, attempt, job_dir)
        info = read_json(job_dir / SUPERVISOR) or {}
        alive = not _lock_free(job_dir)
        if alive and not info:  # started just before the old daemon died
            return Handle(job_id, attempt, job_dir)
        ours = info.get("attempt") == attempt
        if alive and ours and _same_process(info.get("pid"), info.get("start_ticks")):
            return Handle(job_id, attempt, job_dir)
        self._kill_orphan(Handle(job_id, attempt, job_dir))
        return None

    def _kill_orphan(self, handle: Handle) -> None:
        """A job process left without its supervisor must not run on beside a requeued copy."""
        self.signal(handle, signal.SIGKILL)


def _read_exit(job_dir: Path, attempt: int) -> Ended | None:
    info = read_json(job_dir / EXIT)
    if not info or info.get("attempt") != attempt:
        return None
    return Ended(int(info["exit_code"]), float(info["started_at"]), float(info["ended_at"]))
