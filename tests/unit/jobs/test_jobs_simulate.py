"""The simulator on small traces whose utilisation and JCT can be worked out by hand."""

from __future__ import annotations

import math

import pytest

from tensorfab.errors import TensorfabError
from tensorfab.jobs.policy import PolicyConfig
from tensorfab.jobs.simulate import SimConfig, build_nodes, fair_split, simulate
from tensorfab.jobs.trace import TraceJob

DAY = 24 * 3600.0


def tj(submit, gpus, duration, limit=math.inf, priority=4, team="a", preemptible=True):
    return TraceJob(submit, gpus, duration, limit, priority, team, f"{team}-u", preemptible)


def cfg(gpus=2, per_node=2, **policy) -> SimConfig:
    policy.setdefault("backfill", False)
    return SimConfig(gpus=gpus, gpus_per_node=per_node, policy=PolicyConfig(**policy))


def test_fifo_by_hand():
    # B (1 GPU, 50 s) at t=0, A (2 GPUs, 100 s) at t=1: A waits for B, runs 50..150
    r = simulate([tj(0, 1, 50), tj(1, 2, 100)], cfg(policy="fifo"))
    assert r["succeeded"] == 2 and r["unfinished"] == 0
    assert r["mean_jct_s"] == pytest.approx((50 + 149) / 2)
    assert r["mean_wait_s"] == pytest.approx((0 + 49) / 2)
    assert r["span_s"] == 150
    assert r["utilisation"] == pytest.approx((50 + 200) / (2 * 150))
    # the wait distribution: one job of two waited, 49 s
    assert r["waited_share"] == pytest.approx(0.5)
    assert r["max_wait_s"] == pytest.approx(49) and r["p99_wait_s"] == pytest.approx(49)


def test_backfill_by_hand():
    # R (1 GPU, limit 100) runs; head H (2 GPUs) is reserved at t=100; S (1 GPU, 20 s) fits before
    trace = [tj(0, 1, 100, limit=100), tj(1, 2, 10, limit=10), tj(2, 1, 20, limit=20)]
    strict = simulate(trace, cfg(policy="fifo"))
    easy = simulate(trace, cfg(policy="fifo", backfill=True))
    # strict: R 0..100, H 100..110, S 110..130 -> JCTs 100, 109, 128
    assert strict["mean_jct_s"] == pytest.approx((100 + 109 + 128) / 3)
    # backfill: S runs 2..22 beside R, H still starts at 100 -> JCTs 100, 109, 20
    assert easy["mean_jct_s"] == pytest.approx((100 + 109 + 20) / 3)
    assert easy["span_s"] == strict["span_s"] - 20


def test_preempted_job_resumes_with_its_remaining_work():
    # low L (100 s) from t=0; high H (10 s) at t=10 preempts it; grace 5 s: L ran 15 s
    trace = [tj(0, 1, 100, priority=2), tj(10, 1, 10, priority=7)]
    r = simulate(
        trace, SimConfig(gpus=1, gpus_per_node=1, policy=PolicyConfig("priority", grace_s=5))
    )
    assert r["preemptions"] == 1
    # H runs 15..25 (JCT 15); L resumes at 25 with 85 s left, ends at 110 (JCT 110)
    assert r["mean_jct_s"] == pytest.approx((15 + 110) / 2)
    assert r["utilisation"] == pytest.approx(1.0)


def test_time_limit_stop_fails_the_job():
    r = simulate(
        [tj(0, 1, 100, limit=50)],
        SimConfig(gpus=1, gpus_per_node=1, policy=PolicyConfig(grace_s=5)),
    )
    assert (r["succeeded"], r["failed"], r["time_limit_stops"]) == (0, 1, 1)
    assert r["span_s"] == 55  # stopped at 50, ended after its 5 s grace


def test_multi_node_job_takes_whole_nodes():
    # 4 nodes of 2 GPUs; a 1-GPU job on node0 leaves 3 idle nodes: the 6-GPU job fits beside it
    r = simulate([tj(0, 1, 100), tj(0, 6, 100)], cfg(gpus=8, per_node=2, policy="fifo"))
    assert r["mean_jct_s"] == 100 and r["utilisation"] == pytest.approx(7 / 8)


def test_job_that_never_fits_is_refused():
    with pytest.raises(
        TensorfabError,
        match=r"trace job 1 \(by submit time; submit_time 0\): job 1: asks for 4 GPUs",
    ):
        simulate([tj(0, 4, 10)], cfg(gpus=2))


def test_build_nodes_splits_the_cluster():
    nodes = build_nodes(SimConfig(gpus=10, gpus_per_node=4, cores_per_gpu=2))
    assert [len(n.gpus) for n in nodes] == [4, 4, 2]
    assert [len(n.cores) for n in nodes] == [8, 8, 4]


def test_fair_split_is_weighted_max_min():
    assert fair_split(8, {"a": 10, "b": 10}, {}) == {"a": 4.0, "b": 4.0}
    assert fair_split(8, {"a": 2, "b": 10}, {}) == {"a": 2.0, "b": 6.0}  # a wants only 2
    assert fair_split(8, {"a": 10, "b": 10}, {"a": 3.0}) == {"a": 6.0, "b": 2.0}
    assert fair_split(8, {"a": 10, "b": 0}, {}) == {"a": 8.0}


def test_fair_share_between_small_and_large_jobs_over_a_day():
    """Team a: endless 1-GPU 10-minute jobs; team b: endless 4-GPU 2-hour jobs; 8 GPUs."""
    # each team always has more queued than 8 GPUs can run (two rounds ahead), never dry
    trace = [tj(max(0, k // 8 - 2) * 600.0, 1, 600, limit=600, team="a") for k in range(8 * 6 * 24)]
    trace += [tj(max(0, k // 2 - 2) * 7200.0, 4, 7200, limit=7200, team="b") for k in range(2 * 12)]
    r = simulate(
        trace, SimConfig(gpus=8, gpus_per_node=8, policy=PolicyConfig("fair"), horizon_s=DAY)
    )
    a, b = r["team_gpu_hours"]["a"], r["team_gpu_hours"]["b"]
    assert a + b == pytest.approx(8 * 24)  # never an idle GPU
    assert abs(a - b) / max(a, b) < 0.05, (a, b)
    print(f"fair: a {a:.2f} GPU-h, b {b:.2f} GPU-h, fair-share error {r['fair_share_error']:.3f}")
    assert r["fair_share_error"] < 0.05
    # the same trace in submit order is not fair: the check above can fail
    fifo_cfg = SimConfig(gpus=8, gpus_per_node=8, policy=PolicyConfig("fifo"), horizon_s=DAY)
    fifo = simulate(trace, fifo_cfg)["team_gpu_hours"]
    assert abs(fifo["a"] - fifo["b"]) / max(fifo.values()) > 0.1, fifo


def test_steady_part_measures_only_the_jobs_submitted_in_the_window():
    # A (2 GPUs) 0..100; B and C queue behind it and start at 100; D arrives at 200
    trace = [tj(0, 2, 100), tj(10, 1, 50), tj(20, 1, 30), tj(200, 1, 10)]
    r = simulate(trace, _measured((5, 150)))
    s = r["steady"]
    assert (s["from_s"], s["to_s"], s["jobs"]) == (5, 150, 2)  # B and C only
    assert s["mean_jct_s"] == pytest.approx((140 + 110) / 2)  # B ends 150, C ends 130
    assert s["mean_wait_s"] == pytest.approx((90 + 80) / 2)
    # busy GPU-s in 5..150: A's 2 GPUs to 100, B and C to 130, B alone to 150
    assert s["utilisation"] == pytest.approx((2 * 95 + 2 * 30 + 1 * 20) / (2 * 145))
    assert s["started_after_last_arrival"] == 0  # both started before D arrived
    # the whole-trace numbers are unchanged by the measurement
    assert r["mean_jct_s"] == pytest.approx((100 + 140 + 110 + 10) / 4)
    # without D the last arrival is C's (t=20): both measured jobs started after it
    alone = simulate(trace[:3], _measured((5, 150)))["steady"]
    assert alone["started_after_last_arrival"] == 1.0
    assert "steady" not in simulate(trace, cfg(policy="fifo"))


def _measured(window: tuple[float, float]) -> SimConfig:
    return SimConfig(gpus=2, gpus_per_node=2, policy=PolicyConfig("fifo"), measure=window)
