"""A bounded load test against a running server: N concurrent clients, M requests.

Like Triton's ``perf_analyzer`` in its simplest mode: every client sends its next request
as soon as the previous answer arrives, until the request count or the time bound is
reached. Reports successful requests/s, their latency percentiles, and every non-200
answer with the first error it carried, so "no failed request" is checked, not assumed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LoadSpec:
    url: str  # e.g. http://127.0.0.1:8000/v1/models/ner:predict
    bodies: list[bytes]  # sent in turn
    clients: int = 32
    requests: int = 1000
    max_seconds: float = 120.0
    token: str | None = None


NO_RESPONSE = "0"  # the status recorded for a request that got no HTTP answer at all
DETAIL_CHARS = 200


async def _client(
    http: Any,
    spec: LoadSpec,
    counter: list[int],
    deadline: float,
    out: list[tuple[float, int]],
    errors: dict[str, str],
) -> None:
    headers = {"content-type": "application/json"}
    if spec.token:
        headers["authorization"] = f"Bearer {spec.token}"
    while counter[0] < spec.requests and time.monotonic() < deadline:
        i = counter[0]
        counter[0] += 1
        start = time.perf_counter()
        try:
            response = await http.post(
                spec.url, content=spec.bodies[i % len(spec.bodies)], headers=headers
            )
            status = response.status_code
            if status != 200 and str(status) not in errors:
                errors[str(status)] = error_detail(response)
        except Exception as exc:  # a dropped connection is a failed request, not a crash
            status = 0
            errors.setdefault(NO_RESPONSE, transport_detail(exc))
        out.append((time.perf_counter() - start, status))


def error_detail(response: Any) -> str:
    """What a failed answer says: the protocol's ``{"error": ...}``, else its text."""
    try:
        message = response.json().get("error")
    except Exception:  # not JSON, or JSON without an error field: show the text
        message = None
    text = message if isinstance(message, str) else response.text.strip()
    return (text or response.reason_phrase or "no body")[:DETAIL_CHARS]


def transport_detail(exc: Exception) -> str:
    """Why a request got no answer, in the words a user acts on."""
    import httpx

    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({str(exc) or 'connection refused'}); is the server running?"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"[:DETAIL_CHARS]


async def _run(spec: LoadSpec) -> dict[str, Any]:
    import httpx

    limits = httpx.Limits(max_connections=spec.clients, max_keepalive_connections=spec.clients)
    results: list[tuple[float, int]] = []
    errors: dict[str, str] = {}
    counter = [0]
    async with httpx.AsyncClient(limits=limits, timeout=spec.max_seconds) as http:
        start = time.perf_counter()
        deadline = time.monotonic() + spec.max_seconds
        await asyncio.gather(
            *(_client(http, spec, counter, deadline, results, errors) for _ in range(spec.clients))
        )
        seconds = time.perf_counter() - start
    return summarize(results, seconds, spec.clients, errors)


def summarize(
    results: list[tuple[float, int]],
    seconds: float,
    clients: int,
    errors: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Successful requests/s, their latency percentiles (ms) and every status's count.

    Throughput and latency count the 200 answers only: a 404 or a refused connection
    comes back fast, and counting it would report a dead server as a quick one. ``errors``
    holds the first error message seen for each failing status.
    """
    statuses: dict[str, int] = {}
    for _, status in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    latencies = np.array([t for t, status in results if status == 200]) * 1e3
    ok = len(latencies)
    return {
        "clients": clients,
        "requests": len(results),
        "succeeded": ok,
        "failed": len(results) - ok,
        "status_counts": statuses,
        "errors": dict(errors or {}),
        "seconds": seconds,
        "requests_per_s": ok / seconds if seconds > 0 else 0.0,
        "p50_ms": float(np.percentile(latencies, 50)) if ok else None,
        "p99_ms": float(np.percentile(latencies, 99)) if ok else None,
    }


def failure_line(summary: dict[str, Any]) -> str | None:
    """Why requests failed, one line (``None`` when none did): each failing status with
    its count and first error, e.g. ``all 5 requests failed: 404 x5 (model 'x' ...)``."""
    failed, total = summary["failed"], summary["requests"]
    if total == 0:
        return "no request was sent (the time bound ran out first)"
    if failed == 0:
        return None
    parts = []
    for status, count in sorted(summary["status_counts"].items()):
        if status == "200":
            continue
        label = "no response" if status == NO_RESPONSE else status
        detail = summary["errors"].get(status)
        parts.append(f"{label} x{count}" + (f" ({detail})" if detail else ""))
    head = (
        f"all {total} requests failed"
        if failed == total
        else f"{failed} of {total} requests failed"
    )
    return f"{head}: {', '.join(parts)}"


def run_load(spec: LoadSpec) -> dict[str, Any]:
    """Run the load test to completion (blocking) and summarize it."""
    return asyncio.run(_run(spec))


def model_not_ready(base: str, model: str, token: str | None = None) -> str | None:
    """Why ``model`` cannot take the load (its KServe v2 ready route answered an error), or
    None: ready, or no answer at all (the load itself then says it could not connect). A
    load test of a model the server does not have would send every request to a 404."""
    import httpx

    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(f"{base}/v2/models/{model}/ready", headers=headers, timeout=10.0)
    except httpx.TransportError:
        return None
    if response.status_code == 200:
        return None
    return f"{error_detail(response)} (HTTP {response.status_code})"


def wait_until_ready(url: str, proc: Any = None, timeout_s: float = 180.0) -> bool:
    """Poll ``url``/v2/health/ready until it answers 200 (True); False when ``timeout_s``
    pass first or ``proc`` (the server's ``Popen``, if given) exits. A load test starts
    only once the server is ready; the caller decides what a failed start means."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (proc is None or proc.poll() is None):
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=5.0).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    return False
