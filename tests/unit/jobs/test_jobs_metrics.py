"""The scheduler's Prometheus metrics, read back from the text exposition a scrape gets."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tensorfab.jobs.metrics import JobsMetrics


def _samples(metrics: JobsMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """name + labels -> value, from the exposition text exactly as /metrics serves it."""
    text = metrics.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_every_family_is_there_at_zero_from_the_start() -> None:
    got = _samples(JobsMetrics())
    for state in ("queued", "held", "preempted"):
        assert got[("tensorfab_jobs_queue_depth", (("state", state),))] == 0
    for state in ("succeeded", "failed", "cancelled"):
        assert got[("tensorfab_jobs_ended_total", (("state", state),))] == 0
    assert got[("tensorfab_jobs_running", ())] == 0
    assert got[("tensorfab_jobs_gpus", (("state", "idle"),))] == 0
    assert got[("tensorfab_jobs_wait_seconds_count", ())] == 0


def test_update_sets_gauges_and_zeroes_emptied_states() -> None:
    metrics = JobsMetrics()
    metrics.update({"queued": 5, "held": 1}, running=3, gpus_allocated=6, gpus_idle=2)
    got = _samples(metrics)
    assert got[("tensorfab_jobs_queue_depth", (("state", "queued"),))] == 5
    assert got[("tensorfab_jobs_queue_depth", (("state", "held"),))] == 1
    assert got[("tensorfab_jobs_queue_depth", (("state", "preempted"),))] == 0
    assert got[("tensorfab_jobs_running", ())] == 3
    assert got[("tensorfab_jobs_gpus", (("state", "allocated"),))] == 6
    assert got[("tensorfab_jobs_gpus", (("state", "idle"),))] == 2
    metrics.update({"preempted": 2}, running=0, gpus_allocated=0, gpus_idle=8)
    got = _samples(metrics)
    assert got[("tensorfab_jobs_queue_depth", (("state", "queued"),))] == 0  # not stale
    assert got[("tensorfab_jobs_queue_depth", (("state", "preempted"),))] == 2
    assert got[("tensorfab_jobs_gpus", (("state", "idle"),))] == 8


def test_wait_histogram_buckets_are_cumulative() -> None:
    metrics = JobsMetrics()
    for seconds in (0.5, 3.0, 45.0, 45.0, 5000.0, -1.0):  # a clock step back counts as 0
        metrics.observe_wait(seconds)
    got = _samples(metrics)

    def bucket(le: str) -> float:
        return got[("tensorfab_jobs_wait_seconds_bucket", (("le", le),))]

    # <=1: 0.5 and the clamped -1; <=5: +3.0; <=60: +45 twice; <=7200: +5000
    assert (bucket("1.0"), bucket("5.0"), bucket("30.0"), bucket("60.0")) == (2, 3, 3, 5)
    assert (bucket("3600.0"), bucket("7200.0"), bucket("+Inf")) == (5, 6, 6)
    assert got[("tensorfab_jobs_wait_seconds_count", ())] == 6
    assert got[("tensorfab_jobs_wait_seconds_sum", ())] == pytest.approx(5093.5)


def test_ended_counts_by_state() -> None:
    metrics = JobsMetrics()
    for state in ("succeeded", "succeeded", "failed"):
        metrics.ended(state)
    got = _samples(metrics)
    assert got[("tensorfab_jobs_ended_total", (("state", "succeeded"),))] == 2
    assert got[("tensorfab_jobs_ended_total", (("state", "failed"),))] == 1
    assert got[("tensorfab_jobs_ended_total", (("state", "cancelled"),))] == 0


def test_daemons_do_not_share_counts() -> None:
    a, b = JobsMetrics(), JobsMetrics()
    a.ended("failed")
    a.update({"queued": 4}, running=1, gpus_allocated=1, gpus_idle=0)
    assert _samples(b)[("tensorfab_jobs_ended_total", (("state", "failed"),))] == 0
    assert _samples(b)[("tensorfab_jobs_queue_depth", (("state", "queued"),))] == 0


def test_wrong_states_are_refused() -> None:
    metrics = JobsMetrics()
    with pytest.raises(ValueError, match=r"not a waiting state: \['running'\]"):
        metrics.update({"running": 1}, running=1, gpus_allocated=0, gpus_idle=0)
    with pytest.raises(ValueError, match="not a final state: 'running'"):
        metrics.ended("running")
