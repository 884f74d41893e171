"""Prometheus metrics of the server, per model and version, on a registry of its own.

Counts and failures of requests, and histograms of queue time, compute time, batch size
and whole-request latency: what an operator needs to see whether batching works (batch
sizes) and where time goes (queue vs compute).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

from tensorfab.metrics.prometheus import new_registry, render
from tensorfab.serve.batching import BatchStats

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServerMetrics:
    """The server's metric families; one instance per server (tests run several)."""

    def __init__(self) -> None:
        self.registry = new_registry()
        labels = ["model", "version"]
        self.requests = Counter(
            "tensorfab_inference_requests",
            "Inference requests by outcome",
            [*labels, "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tensorfab_request_duration_seconds",
            "Inference request time, arrival to response",
            labels,
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.queue = Histogram(
            "tensorfab_queue_duration_seconds",
            "Time a request waited in the batching queue",
            labels,
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.compute = Histogram(
            "tensorfab_compute_duration_seconds",
            "Time to compute one batch",
            labels,
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "tensorfab_batch_size",
            "Rows per computed batch",
            labels,
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "tensorfab_batch_requests",
            "Requests taken from the queue together (a batch, before its length groups)",
            labels,
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "tensorfab_queue_depth", "Requests waiting", labels, registry=self.registry
        )
        self.failure_seconds = Counter(
            "tensorfab_failed_request_duration_seconds",
            "Time spent on inference requests that failed",
            labels,
            registry=self.registry,
        )
        # What Triton's statistics extension shows besides the families above (statistics.py):
        # when each version last answered (ms since the epoch), and per exact batch size the
        # batches computed and their compute time in ns.
        self.last_inference_ms: dict[tuple[str, str], int] = {}
        self.batches: dict[tuple[str, str], dict[int, list[int]]] = defaultdict(dict)
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def record_batch(self, model: str, version: str, stats: BatchStats) -> None:
        self.batch_size.labels(model, version).observe(stats.rows)
        self.compute.labels(model, version).observe(stats.compute_s)
        if stats.taken:
            self.batch_requests.labels(model, version).observe(stats.taken)
        for wait in stats.queue_s:
            self.queue.labels(model, version).observe(wait)
        count_ns = self.batches[model, version].setdefault(stats.rows, [0, 0])
        count_ns[0] += 1
        count_ns[1] += int(stats.compute_s * 1e9)

    @contextmanager
    def request(self, model: str, version: str) -> Iterator[None]:
        """Count the request in the block as a success or a failure, with its latency."""
        start = time.perf_counter()
        try:
            yield
        except Exception:
            self.record_request(model, version, "failure", time.perf_counter() - start)
            raise
        self.record_request(model, version, "success", time.perf_counter() - start)

    def record_request(self, model: str, version: str, outcome: str, seconds: float) -> None:
        count, duration = self._request_children(model, version, outcome)
        count.inc()
        if outcome == "success":
            duration.observe(seconds)
            self.last_inference_ms[model, version] = int(time.time() * 1000)
        else:
            duration.inc(seconds)

    def _request_children(self, model: str, version: str, outcome: str) -> tuple[Any, Any]:
        """The request counter's and the duration's samples of a model, version and outcome,
        looked up once (``labels()`` checks and locks on every call: per request, on the loop)."""
        found = self._children.get((model, version, outcome))
        if found is None:
            duration = self.latency if outcome == "success" else self.failure_seconds
            found = (self.requests.labels(model, version, outcome), duration.labels(model, version))
            self._children[model, version, outcome] = found
        return found

    def value(self, sample: str, model: str, version: str, **labels: str) -> float:
        """One sample of the registry (0 when never recorded), e.g. a histogram's ``_count``."""
        found = self.registry.get_sample_value(
            sample, {"model": model, "version": version, **labels}
        )
        return found or 0.0

    def render(self) -> bytes:
        return render(self.registry)


def page_sample(page: str, sample: str, **labels: str) -> float:
    """One sample of a ``/metrics`` page as a client reads it (0 when absent), e.g.
    ``page_sample(text, "tensorfab_batch_size_count", model="m", version="1")``."""
    for family in text_string_to_metric_families(page):
        for found in family.samples:
            if found.name == sample and found.labels == labels:
                return float(found.value)
    return 0.0
