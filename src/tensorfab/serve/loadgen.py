"""A bounded load test against a running server: N concurrent clients, M requests.

Like Triton's ``perf_analyzer`` in its simplest mode: every client sends its next request
as soon as the previous answer arrives, until the request count or the time bound is
reached. Reports requests/s, latency percentiles and every non-200 answer, so "no failed
request" is checked, not assumed.
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


async def _client(
    http: Any, spec: LoadSpec, counter: list[int], deadline: float, out: list[tuple[float, int]]
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
        except Exception:  # a dropped connection is a failed request, not a crash of the test
            status = 0
        out.append((time.perf_counter() - start, status))


async def _run(spec: LoadSpec) -> dict[str, Any]:
    import httpx

    limits = httpx.Limits(max_connections=spec.clients, max_keepalive_connections=spec.clients)
    results: list[tuple[float, int]] = []
    counter = [0]
    async with httpx.AsyncClient(limits=limits, timeout=spec.max_seconds) as http:
        start = time.perf_counter()
        deadline = time.monotonic() + spec.max_seconds
        await asyncio.gather(
            *(_client(http, spec, counter, deadline, results) for _ in range(spec.clients))
        )
        seconds = time.perf_counter() - start
    return summarize(results, seconds, spec.clients)


def summarize(results: list[tuple[float, int]], seconds: float, clients: int) -> dict[str, Any]:
    """Requests/s, latency percentiles (ms) and status counts of a finished load run."""
    latencies = np.array([t for t, _ in results]) * 1e3
    statuses: dict[str, int] = {}
    for _, status in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    ok = statuses.get("200", 0)
    return {
        "clients": clients,
        "requests": len(results),
        "failed": len(results) - ok,
        "status_counts": statuses,
        "seconds": seconds,
        "requests_per_s": len(results) / seconds if seconds > 0 else 0.0,
        "p50_ms": float(np.percentile(latencies, 50)) if len(results) else None,
        "p99_ms": float(np.percentile(latencies, 99)) if len(results) else None,
    }


def run_load(spec: LoadSpec) -> dict[str, Any]:
    """Run the load test to completion (blocking) and summarize it."""
    return asyncio.run(_run(spec))
