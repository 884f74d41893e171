"""Triton's statistics extension, read from the server's Prometheus metrics.

``GET /v2/models/{name}[/versions/{v}]/stats`` and gRPC ``ModelStatistics`` answer what
``/metrics`` counts, from the same registry, so the two never disagree: successes and
failures with their time, queue and compute time, rows inferred and batches executed.
A request's queue time is counted once per request; compute time once per batch it ran
in (``compute_infer``: executions), as Triton counts them.
"""

from __future__ import annotations

from typing import Any

from tensorfab.serve.metrics import ServerMetrics

NS = 1e9


def _duration(count: float, seconds: float) -> dict[str, int]:
    return {"count": int(count), "ns": round(seconds * NS)}


def _histogram(metrics: ServerMetrics, family: str, model: str, version: str) -> dict[str, int]:
    count = metrics.value(f"{family}_count", model, version)
    return _duration(count, metrics.value(f"{family}_sum", model, version))


def model_statistics(metrics: ServerMetrics, model: str, version: str) -> dict[str, Any]:
    """One version's statistics in Triton's JSON shape (``tritonclient`` reads it)."""
    requests = "tensorfab_inference_requests_total"
    failed = metrics.value(requests, model, version, outcome="failure")
    compute = _histogram(metrics, "tensorfab_compute_duration_seconds", model, version)
    zero = _duration(0, 0.0)
    batches = metrics.batches.get((model, version), {})
    return {
        "name": model,
        "version": version,
        "last_inference": metrics.last_inference_ms.get((model, version), 0),
        "inference_count": int(metrics.value("tensorfab_batch_size_sum", model, version)),
        "execution_count": int(metrics.value("tensorfab_batch_size_count", model, version)),
        "inference_stats": {
            "success": _histogram(metrics, "tensorfab_request_duration_seconds", model, version),
            "fail": _duration(
                failed,
                metrics.value("tensorfab_failed_request_duration_seconds_total", model, version),
            ),
            "queue": _histogram(metrics, "tensorfab_queue_duration_seconds", model, version),
            "compute_input": zero,
            "compute_infer": compute,
            "compute_output": zero,
            "cache_hit": zero,
            "cache_miss": zero,
        },
        "batch_stats": [
            {
                "batch_size": rows,
                "compute_input": zero,
                "compute_infer": {"count": count, "ns": ns},
                "compute_output": zero,
            }
            for rows, (count, ns) in sorted(batches.items())
        ],
    }
