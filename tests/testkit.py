"""Helpers for tests: run the CLI in a subprocess as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tensorfab.cli.main", *args]


def run_cli(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        cli_command(*args),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# -- a private network namespace holding nothing but loopback (the Ray tests) ---------------

_NAMESPACE_CHECK = ["unshare", "-n", "--", "sh", "-c", "ip link set lo up && ip -o link"]


def loopback_namespace_unavailable() -> str | None:
    """Why no loopback-only network namespace can be made here; None when one can.

    Ray listens on every interface and picks the machine's address unless told otherwise,
    so the Ray tests run inside ``unshare -n`` (root only), where nothing but ``lo`` exists.
    """
    if os.geteuid() != 0:
        return "needs root to make a private network namespace (unshare -n)"
    try:
        done = subprocess.run(
            _NAMESPACE_CHECK, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare -n is not available: {exc}"
    if done.returncode != 0:
        return f"unshare -n failed: {(done.stderr.strip().splitlines() or ['?'])[0]}"
    return None


def in_loopback_namespace(argv: list[str]) -> list[str]:
    """``argv`` run in a new network namespace whose only interface, ``lo``, is up."""
    return ["unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]
