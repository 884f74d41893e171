"""The machinery behind :func:`tensorfab.jobs.policy.decide` (in progress)."""

from __future__ import annotations


def schedule(state, now, config):  # noqa: ANN001 -- filled in by the next commit
    raise NotImplementedError("jobs.schedule: the policy logic lands in the next commit")
