"""The load test's summary: successful throughput only, and why requests failed."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tensorfab.cli.perf import server_url
from tensorfab.errors import TensorfabError
from tensorfab.serve.loadgen import (
    error_detail,
    failure_line,
    model_not_ready,
    summarize,
    transport_detail,
    wait_until_ready,
)


def test_throughput_and_latency_count_successful_answers_only() -> None:
    results = [(0.010, 200), (0.030, 200), (0.001, 404), (0.001, 404)]
    summary = summarize(results, 2.0, 4, {"404": "model 'x' is not in the repository"})
    assert summary["requests"] == 4 and summary["succeeded"] == 2 and summary["failed"] == 2
    assert summary["requests_per_s"] == pytest.approx(1.0)  # 2 answers in 2 s, not 4
    assert summary["p50_ms"] == pytest.approx(20.0) and summary["p99_ms"] == pytest.approx(29.8)
    assert summary["status_counts"] == {"200": 2, "404": 2}
    assert (
        failure_line(summary)
        == "2 of 4 requests failed: 404 x2 (model 'x' is not in the repository)"
    )


def test_all_failed_reports_each_status_with_its_first_error_and_no_latency() -> None:
    results = [(0.001, 404)] * 3 + [(0.002, 0)] * 2
    errors = {"404": "model 'x' is not in the repository", "0": "cannot connect (refused)"}
    summary = summarize(results, 0.5, 2, errors)
    assert summary["requests_per_s"] == 0.0
    assert summary["p50_ms"] is None and summary["p99_ms"] is None
    assert failure_line(summary) == (
        "all 5 requests failed: no response x2 (cannot connect (refused)), "
        "404 x3 (model 'x' is not in the repository)"
    )
    assert failure_line(summarize([(0.01, 200)], 1.0, 1)) is None
    assert (
        failure_line(summarize([], 1.0, 1)) == "no request was sent (the time bound ran out first)"
    )


def test_error_details_are_the_protocols_error_or_the_body_text() -> None:
    protocol = httpx.Response(404, json={"error": "model 'x' is not in the repository"})
    assert error_detail(protocol) == "model 'x' is not in the repository"
    assert error_detail(httpx.Response(502, text="Bad gateway\n")) == "Bad gateway"
    assert error_detail(httpx.Response(500)) == "Internal Server Error"
    refused = transport_detail(httpx.ConnectError("All connection attempts failed"))
    assert refused == "cannot connect (All connection attempts failed); is the server running?"
    assert transport_detail(httpx.ReadTimeout("slow")) == "timed out"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("notaurl", "notaurl: not a server URL; give http://HOST:PORT"),
        ("localhost:8000", "localhost:8000: not a server URL; give http://HOST:PORT"),
        ("ftp://host:21", "ftp://host:21: not a server URL; give http://HOST:PORT"),
        ("http://host:99999", "http://host:99999: not a server URL (Port out of range 0-65535)"),
    ],
)
def test_perf_refuses_what_is_not_a_server_url(url: str, message: str) -> None:
    with pytest.raises(TensorfabError) as info:
        server_url(url)
    assert str(info.value) == message


def test_perf_keeps_a_server_url_without_its_trailing_slash() -> None:
    assert server_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    assert server_url("https://example.org") == "https://example.org"


class _Exited:
    """A server process that has already exited."""

    def poll(self) -> int:
        return 1


def test_waiting_for_a_server_stops_when_it_exits_or_time_runs_out() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    started = time.monotonic()
    assert wait_until_ready(url, _Exited(), timeout_s=30) is False
    assert time.monotonic() - started < 1.0  # an exited server is not waited for
    assert wait_until_ready(url, None, timeout_s=0.5) is False
    assert time.monotonic() - started < 5.0


def test_a_model_is_asked_if_it_is_ready_with_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = []

    def get(url: str, headers: dict, timeout: float) -> httpx.Response:
        asked.append((url, headers))
        code, body = (401, {"error": "missing or wrong token"}) if not headers else (200, {})
        return httpx.Response(code, json=body, request=httpx.Request("GET", url))

    monkeypatch.setattr(httpx, "get", get)
    assert model_not_ready("http://127.0.0.1:1", "ner", "t0k") is None
    assert asked[-1] == ("http://127.0.0.1:1/v2/models/ner/ready", {"authorization": "Bearer t0k"})
    assert model_not_ready("http://127.0.0.1:1", "ner") == "missing or wrong token (HTTP 401)"

    def refused(url: str, headers: dict, timeout: float) -> httpx.Response:
        raise httpx.ConnectError("refused")

    monkeypatch.setattr(httpx, "get", refused)  # no answer: the load itself reports it
    assert model_not_ready("http://127.0.0.1:1", "ner") is None
