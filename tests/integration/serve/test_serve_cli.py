"""``tensorfab serve`` and ``tensorfab perf`` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tensorfab.serve import BackgroundServer
from testkit import cli_command, run_cli


def test_serve_cli_serves_and_stops_on_sigterm(serve_repo: Path, free_port) -> None:
    port = free_port()
    proc = subprocess.Popen(
        cli_command("serve", str(serve_repo), "--port", str(port), "--models", "digits"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TENSORFAB_TOKEN": ""},
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/v2/models/digits/ready").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err  # 128 + SIGTERM, after a graceful shutdown
    assert f"serving {serve_repo} on http://127.0.0.1:{port} (no auth)" in out
    assert "  digits [1]: ready" in out
    assert "stopped on SIGTERM after the requests in flight" in out


def test_serve_cli_refuses_a_missing_repository(tmp_path: Path) -> None:
    proc = run_cli("serve", "no-such-repo", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: no-such-repo: no such model repository folder"


def test_perf_cli_reports_a_bounded_run(server: BackgroundServer, tmp_path: Path) -> None:
    (tmp_path / "texts.txt").write_text("EU rejects German call .\nPeter visited Paris .\n")
    proc = run_cli(
        "perf", server.url, "--model", "ner", "--texts", "texts.txt",
        "--clients", "4", "--requests", "20", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["requests"] == 20 and summary["failed"] == 0 and summary["clients"] == 4
    missing = run_cli("perf", server.url, "--model", "nope", "--texts", "texts.txt", cwd=tmp_path)
    assert missing.returncode == 1  # every request got a 404
