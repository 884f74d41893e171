"""The per-job supervisor: ``python -m tensorfab.jobs.supervisor JOBDIR``.

It starts the job's process, waits for it and writes how it ended (``exit.json``)
atomically into the job folder, so a daemon restarted after a crash learns how jobs it did
not start ended. It runs in a session of its own, detached from the daemon: a daemon killed
with ``kill -9`` leaves it (and the job) running.

What it reads (``launch.json``, written by the backend): the attempt number, argv, extra
environment, working directory and the CPU cores to pin. What it writes:
``supervisor.json`` (its pid and start time, the child's pid and start time; what adoption
checks so a reused pid is never taken for the job) and ``exit.json``. Both carry the attempt,
so a file left by an earlier attempt is never read as this one's.

It imports only the standard library and ``tensorfab.files`` (starting fast matters: a
node may start hundreds of short jobs) and holds the job's lock file descriptor, inherited
from the backend, for its whole life: a free lock means no supervisor lives.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tensorfab.files import write_text_atomic

LAUNCH = "launch.json"
SUPERVISOR = "supervisor.json"
EXIT = "exit.json"
LOCK = "running.lock"
STDOUT = "stdout.log"
STDERR = "stderr.log"


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22).

    Together with the pid it names one process: a pid reused later has another start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def exit_code(returncode: int) -> int:
    """A shell's view of the status: 128+N for a process killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _open_logs(job_dir: Path, attempt: int) -> tuple[Any, Any]:
    out = open(job_dir / STDOUT, "ab")  # noqa: SIM115 - handed to the child, closed at exit
    err = open(job_dir / STDERR, "ab")  # noqa: SIM115
    header = f"--- attempt {attempt} started {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n"
    for f in (out, err):
        f.write(header.encode())
        f.flush()
    return out, err


def _pin(cores: list[int]) -> None:
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)  # inherited by the child


def supervise(job_dir: Path) -> int:
    """Run the job described by ``job_dir/launch.json`` to its end; returns its exit code."""
    launch = json.loads((job_dir / LAUNCH).read_text())
    attempt = int(launch["attempt"])
    _pin(list(launch.get("cores", [])))
    out, err = _open_logs(job_dir, attempt)
    started = time.time()
    try:
        child = subprocess.Popen(
            launch["argv"],
            cwd=launch["cwd"],
            env={**os.environ, **launch.get("env", {})},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own session and process group: signalled as a whole
        )
    except OSError as exc:  # no such program, or cwd gone: the job failed to start
        err.write(f"error: cannot start {launch['argv'][0]}: {exc}\n".encode())
        err.flush()
        _write_exit(job_dir, attempt, 127, started)
        return 127
    record = {
        "attempt": attempt,
        "pid": os.getpid(),
        "start_ticks": start_ticks(os.getpid()),
        "child_pid": child.pid,
        "child_start_ticks": start_ticks(child.pid),
        "started_at": started,
    }
    write_text_atomic(job_dir / SUPERVISOR, json.dumps(record))
    _forward_signals(child.pid)
    returncode = _wait(child)
    code = exit_code(returncode)
    _write_exit(job_dir, attempt, code, started)
    return code


def _write_exit(job_dir: Path, attempt: int, code: int, started: float) -> None:
    result = {"attempt": attempt, "exit_code": code, "started_at": started, "ended_at": time.time()}
    write_text_atomic(job_dir / EXIT, json.dumps(result))


def _wait(child: subprocess.Popen[bytes]) -> int:
    while True:
        try:
            return child.wait()
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for safety
            continue


def _forward_signals(pgid: int) -> None:
    """SIGTERM/SIGINT to the supervisor reach the job's process group instead."""

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tensorfab.jobs.supervisor JOBDIR", file=sys.stderr)
        return 2
    supervise(Path(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
