"""``tensorfab serve`` and ``tensorfab perf`` as a user runs them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tensorfab.serve import BackgroundServer
from tensorfab.serve.loadgen import wait_until_ready
from testkit import cli_command, run_cli


def test_serve_cli_serves_and_stops_on_sigterm(serve_repo: Path, free_port) -> None:
    port = free_port()
    proc = subprocess.Popen(
        cli_command("serve", str(serve_repo), "--port", str(port), "--models", "digits"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "TENSORFAB_TOKEN"},  # no auth
    )
    try:
        assert wait_until_ready(f"http://127.0.0.1:{port}", proc, timeout_s=120)
        assert httpx.get(f"http://127.0.0.1:{port}/v2/models/digits/ready").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err  # 128 + SIGTERM, after a graceful shutdown
    assert f"serving {serve_repo} on http://127.0.0.1:{port} (no auth)" in out
    assert "  digits [1]: ready" in out
    assert re.search(r"stopped on SIGTERM: [1-9]\d* requests answered, 0 cut\n", out), out


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
    assert summary["succeeded"] == 20 and summary["requests_per_s"] > 0
    plain = run_cli(
        "perf", server.url, "--model", "ner", "--texts", "texts.txt",
        "--clients", "2", "--requests", "4", cwd=tmp_path,
    )  # fmt: skip
    assert plain.returncode == 0 and plain.stderr == ""
    assert plain.stdout.startswith("4 requests, 0 failed, ") and "successful req/s" in plain.stdout


def test_perf_cli_refuses_a_missing_model_and_says_why_every_request_failed(
    server: BackgroundServer, tmp_path: Path, free_port
) -> None:
    (tmp_path / "texts.txt").write_text("EU rejects German call .\n")
    common = ("--texts", "texts.txt", "--clients", "2", "--requests", "5")
    missing = run_cli("perf", server.url, "--model", "nope", *common, cwd=tmp_path)
    assert missing.returncode == 2  # asked of the model's ready route first: no load sent
    assert missing.stdout == ""
    assert missing.stderr.strip() == (
        f"error: --model 'nope' at {server.url}: model 'nope' is not in the repository "
        "(HTTP 404); nothing was sent"
    )
    closed = f"http://127.0.0.1:{free_port()}"
    refused = run_cli("perf", closed, "--model", "ner", *common, cwd=tmp_path)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith("error: all 5 requests failed: no response x5 (cannot connect")
    assert len(refused.stderr.strip().splitlines()) == 1


def test_perf_cli_refuses_a_url_that_is_not_a_server_before_any_load(tmp_path: Path) -> None:
    (tmp_path / "texts.txt").write_text("EU rejects German call .\n")
    proc = run_cli("perf", "notaurl", "--model", "ner", "--texts", "texts.txt", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == "error: notaurl: not a server URL; give http://HOST:PORT"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--port", "99999"], "error: --port 99999: choose a port from 0 to 65535"),
        (["--threads", "0"], "error: --threads 0: must be at least 1"),
    ],
)
def test_serve_cli_refuses_numbers_it_cannot_start_with(
    serve_repo: Path, tmp_path: Path, option: list[str], message: str
) -> None:
    proc = run_cli("serve", str(serve_repo), *option, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == message


def test_serve_cli_refuses_unknown_models_before_serving(
    serve_repo: Path, tmp_path: Path, free_port
) -> None:
    port = str(free_port())
    proc = run_cli("serve", str(serve_repo), "--port", port, "--models", "ner,nope", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""  # nothing about serving
    assert proc.stderr.strip() == (
        f"error: model 'nope': not in the repository {serve_repo} "
        "(models: broken, digits, digits-torch, ner, ner-torch)"
    )
