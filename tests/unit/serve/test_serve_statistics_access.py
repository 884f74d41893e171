"""Triton's statistics from the server's metrics (hand-computed counts and times) and the
access log's lines, without a server."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from tensorfab.serve.access import access_line, access_logged
from tensorfab.serve.batching import BatchStats
from tensorfab.serve.metrics import ServerMetrics, page_sample
from tensorfab.serve.statistics import model_statistics


def test_statistics_count_what_the_metrics_recorded() -> None:
    metrics = ServerMetrics()
    metrics.record_request("m", "1", "success", 0.25)
    metrics.record_request("m", "1", "success", 0.5)
    metrics.record_request("m", "1", "failure", 0.125)
    metrics.record_request("other", "1", "success", 9.0)  # another model: not counted
    metrics.record_batch("m", "1", BatchStats(rows=3, queue_s=[0.001, 0.002], compute_s=0.01))
    metrics.record_batch("m", "1", BatchStats(rows=3, queue_s=[0.004], compute_s=0.02))
    metrics.record_batch("m", "1", BatchStats(rows=1, queue_s=[0.0], compute_s=0.005))
    stats = model_statistics(metrics, "m", "1")
    assert (stats["name"], stats["version"]) == ("m", "1")
    assert stats["inference_count"] == 7  # rows
    assert stats["execution_count"] == 3  # batches
    inference = stats["inference_stats"]
    assert inference["success"] == {"count": 2, "ns": 750_000_000}
    assert inference["fail"] == {"count": 1, "ns": 125_000_000}
    assert inference["queue"] == {"count": 4, "ns": 7_000_000}
    assert inference["compute_infer"] == {"count": 3, "ns": 35_000_000}
    sizes = [(b["batch_size"], b["compute_infer"]) for b in stats["batch_stats"]]
    assert sizes == [(1, {"count": 1, "ns": 5_000_000}), (3, {"count": 2, "ns": 30_000_000})]
    assert stats["last_inference"] > 0


def test_statistics_of_a_version_never_used_are_zero() -> None:
    stats = model_statistics(ServerMetrics(), "m", "2")
    assert stats["inference_count"] == stats["execution_count"] == stats["last_inference"] == 0
    assert stats["inference_stats"]["success"] == {"count": 0, "ns": 0}
    assert stats["batch_stats"] == []


def test_access_line_format() -> None:
    assert access_line("127.0.0.1:5", "POST /v2/models/m/infer", 200, 0.0031) == (
        "127.0.0.1:5 POST /v2/models/m/infer 200 3.1 ms"
    )
    assert access_line("[::1]:7", "grpc ModelInfer", "NOT_FOUND", 0.0) == (
        "[::1]:7 grpc ModelInfer NOT_FOUND 0.0 ms"
    )


def _run(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_access_logged_writes_one_line_per_http_request_with_its_status() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    lines: list[str] = []
    wrapped = access_logged(app, lines.append)
    scope = {"type": "http", "method": "GET", "path": "/v2/models/x", "client": ("10.0.0.2", 80)}
    sent = _run(wrapped, {**scope, "query_string": b"token=secret"})
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert len(lines) == 1
    assert re.fullmatch(r"10\.0\.0\.2:80 GET /v2/models/x 404 \d+\.\d ms", lines[0])
    _run(wrapped, {"type": "lifespan"})  # not a request: no line
    assert len(lines) == 1


def test_page_sample_reads_a_rendered_metrics_page() -> None:
    metrics = ServerMetrics()
    metrics.record_request("m", "1", "success", 0.5)
    metrics.record_batch("m", "1", BatchStats(rows=4, queue_s=[0.0], compute_s=0.01))
    page = metrics.render().decode()
    success = page_sample(page, "tensorfab_inference_requests_total", model="m", version="1",
                          outcome="success")  # fmt: skip
    assert success == 1.0
    assert page_sample(page, "tensorfab_batch_size_sum", model="m", version="1") == 4.0
    assert page_sample(page, "tensorfab_batch_size_sum", model="m", version="2") == 0.0


def test_batch_requests_count_the_requests_each_taken_batch_had() -> None:
    metrics = ServerMetrics()
    metrics.record_batch("m", "1", BatchStats(rows=3, queue_s=[0.0], compute_s=0.01, taken=5))
    metrics.record_batch("m", "1", BatchStats(rows=2, queue_s=[0.0], compute_s=0.01))  # 2nd group
    metrics.record_batch("m", "1", BatchStats(rows=1, queue_s=[0.0], compute_s=0.01, taken=1))
    page = metrics.render().decode()
    count = page_sample(page, "tensorfab_batch_requests_count", model="m", version="1")
    assert (count, page_sample(page, "tensorfab_batch_requests_sum", model="m", version="1")) == (
        2.0,
        6.0,
    )
    assert page_sample(page, "tensorfab_batch_size_count", model="m", version="1") == 3.0
