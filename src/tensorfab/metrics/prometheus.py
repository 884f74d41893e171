"""Prometheus exposition shared by tensorfab's services (``serve``, ``jobs``).

Each service instance keeps its metric families on a registry of its own (tests run several
servers or daemons in one process; the process-wide default registry would mix their
counts), renders it with :func:`render` and answers ``GET /metrics`` with
:data:`CONTENT_TYPE`. ``prometheus_client`` (the serve extra) is imported only here.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4"  # the text format every Prometheus scrapes


def new_registry() -> CollectorRegistry:
    """A registry for one service instance (not the process-wide default)."""
    return CollectorRegistry()


def render(registry: CollectorRegistry) -> bytes:
    """The registry in the text exposition format, as ``/metrics`` answers it."""
    return generate_latest(registry)
