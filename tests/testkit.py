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
