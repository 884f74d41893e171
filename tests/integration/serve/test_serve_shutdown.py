"""SIGTERM under load (issue 12, item 7): a real ``tensorfab serve`` process on 127.0.0.1 is
stopped while heavy requests are in flight. Every client gets a complete 200 or a clean
refusal (a 503 saying the request was cut, or a connection the server never read), never a
500; and the shutdown line's "answered" and "cut" equal what the clients saw."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from testkit import cli_command

GRACE_S = 2.0
ROUTE = "/v2/models/digits-torch/infer"
IMAGES = {"name": "images", "shape": [16, 1, 28, 28], "datatype": "UINT8",
          "data": np.arange(16 * 784).astype(np.uint8).tolist()}  # fmt: skip
HEAVY = json.dumps({"inputs": [IMAGES]}).encode()
CUT = "server shutting down: the request was cut at the graceful timeout"


def _start(repo: Path, port: int) -> subprocess.Popen[str]:
    args = ("serve", str(repo), "--port", str(port), "--models", "digits-torch",
            "--graceful-timeout", str(GRACE_S))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "TENSORFAB_TOKEN"}
    return subprocess.Popen(cli_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**env, "PYTHONUNBUFFERED": "1"})  # fmt: skip


def _wait_ready(url: str, seen: list[int]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            seen.append(httpx.get(f"{url}/v2/health/ready").status_code)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("the server did not start")


def _half_sent(port: int) -> socket.socket:
    """A heavy request whose headers and first half of the body are in; the rest held back."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (f"POST {ROUTE} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(HEAVY)}\r\n\r\n").encode()  # fmt: skip
    sock.sendall(head + HEAVY[: len(HEAVY) // 2])
    return sock


def _answer(sock: socket.socket) -> tuple[int, str, float]:
    """(status, body, seconds until the server closed); the socket is read to its end."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode(), time.monotonic()


def _hammer(url: str, stop_at: float, outcomes: list[object]) -> None:
    """Heavy requests back to back until the first that is not a 200 (or ``stop_at``)."""
    with httpx.Client(base_url=url, timeout=30) as http:
        while time.monotonic() < stop_at:
            try:
                answer = http.post(ROUTE, content=HEAVY)
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                outcomes.append(type(exc).__name__)  # refused: the server never read it
                return
            outcomes.append((answer.status_code, answer.text))
            if answer.status_code != 200:
                return


def test_sigterm_under_load_answers_or_cleanly_refuses_every_request_and_counts_them(
    serve_repo: Path, free_port
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start(serve_repo, port)
    polls: list[int] = []
    try:
        _wait_ready(url, polls)
        outcomes: list[object] = []
        hammers = [threading.Thread(target=_hammer, args=(url, time.monotonic() + 60, outcomes))
                   for _ in range(6)]  # fmt: skip
        for t in hammers:
            t.start()
        finishing = [_half_sent(port) for _ in range(3)]  # complete after SIGTERM: 200
        stalled = [_half_sent(port) for _ in range(3)]  # never complete: cut at the timeout
        deadline = time.monotonic() + 30
        while len(outcomes) < 12 and time.monotonic() < deadline:  # the hammers are going
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    time.sleep(0.5)
    for sock in finishing:
        sock.sendall(HEAVY[len(HEAVY) // 2 :])
    finished = [_answer(s) for s in finishing]
    cut = [_answer(s) for s in stalled]
    out, err = proc.communicate(timeout=60)
    for t in hammers:
        t.join(timeout=60)

    assert proc.returncode == 143, err
    assert [status for status, _, _ in finished] == [200, 200, 200]
    for _, body, _ in finished:
        assert np.asarray(json.loads(body)["outputs"][0]["data"]).size == 16 * 10
    for status, body, closed in cut:
        assert status == 503 and json.loads(body)["error"].startswith(CUT)
        assert GRACE_S - 0.2 < closed - signalled < GRACE_S + 2  # the guard's cut, not uvicorn's
    heavy = [o for o in outcomes if isinstance(o, tuple)]
    assert heavy and all(s == 200 or (s == 503 and CUT in b) for s, b in heavy), heavy[-3:]
    refused = [o for o in outcomes if isinstance(o, str)]
    assert len(refused) + sum(s != 200 for s, _ in heavy) == 6  # each hammer stopped once
    answered = len(polls) + sum(s == 200 for s, _ in heavy) + len(finished)
    cut_seen = len(cut) + sum(s == 503 for s, _ in heavy)
    line = re.search(r"stopped on SIGTERM: (\d+) requests answered, (\d+) cut\n", out)
    assert line, out
    assert (int(line[1]), int(line[2])) == (answered, cut_seen)
    assert "Traceback" not in err and "CancelledError" not in err, err[-2000:]
