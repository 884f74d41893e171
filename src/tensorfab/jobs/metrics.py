"""Prometheus metrics of the job scheduler, on a registry of its own per daemon.

What an operator watches on a shared node: how many jobs wait (by state) and run, how many
GPUs are handed out or idle, how long jobs wait before they start, and how jobs end. The
daemon feeds plain counts after each scheduling pass (:meth:`JobsMetrics.update`), one
observation per job start (:meth:`JobsMetrics.observe_wait`) and one per job end
(:meth:`JobsMetrics.ended`); ``GET /metrics`` answers :meth:`JobsMetrics.render`.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge, Histogram

from tensorfab.metrics.prometheus import new_registry, render

WAITING_STATES = ("queued", "held", "preempted")
ENDED_STATES = ("succeeded", "failed", "cancelled")
# from seconds (an idle node) to a day (a busy one), as Slurm's wait-time reports bin them
WAIT_BUCKETS_S = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400)


class JobsMetrics:
    """The scheduler's metric families; one instance per daemon (tests run several)."""

    def __init__(self) -> None:
        self.registry = new_registry()
        self.queue_depth = Gauge(
            "tensorfab_jobs_queue_depth",
            "Jobs waiting to run, by state",
            ["state"],
            registry=self.registry,
        )
        self.running = Gauge("tensorfab_jobs_running", "Jobs running", registry=self.registry)
        self.gpus = Gauge(
            "tensorfab_jobs_gpus",
            "GPUs of the node, allocated to jobs or idle",
            ["state"],
            registry=self.registry,
        )
        self.wait = Histogram(
            "tensorfab_jobs_wait_seconds",
            "Time a job waited in the queue before it started",
            buckets=WAIT_BUCKETS_S,
            registry=self.registry,
        )
        self.ended_jobs = Counter(
            "tensorfab_jobs_ended",
            "Jobs that ended, by final state",
            ["state"],
            registry=self.registry,
        )
        self.update({}, running=0, gpus_allocated=0, gpus_idle=0)
        for state in ENDED_STATES:  # present (at 0) from the first scrape
            self.ended_jobs.labels(state)

    def update(
        self, waiting: Mapping[str, int], *, running: int, gpus_allocated: int, gpus_idle: int
    ) -> None:
        """Set the gauges from plain counts; a waiting state absent from ``waiting`` reads 0."""
        unknown = set(waiting) - set(WAITING_STATES)
        if unknown:
            raise ValueError(f"not a waiting state: {sorted(unknown)}; use {WAITING_STATES}")
        for state in WAITING_STATES:
            self.queue_depth.labels(state).set(waiting.get(state, 0))
        self.running.set(running)
        self.gpus.labels("allocated").set(gpus_allocated)
        self.gpus.labels("idle").set(gpus_idle)

    def observe_wait(self, seconds: float) -> None:
        """One job started after waiting ``seconds``."""
        self.wait.observe(max(0.0, seconds))

    def ended(self, state: str) -> None:
        """One job ended in ``state`` (succeeded, failed or cancelled)."""
        if state not in ENDED_STATES:
            raise ValueError(f"not a final state: {state!r}; use {ENDED_STATES}")
        self.ended_jobs.labels(state).inc()

    def render(self) -> bytes:
        return render(self.registry)
