"""The scheduling policy on hand-built states with an explicit clock."""

from __future__ import annotations

import math
import random
from dataclasses import replace

from tensorfab.jobs.fairshare import charge, decay_usage, fair_factors
from tensorfab.jobs.policy import (
    Cancel,
    Job,
    Node,
    Placement,
    PolicyConfig,
    Preempt,
    Start,
    State,
    Stop,
    decide,
    fits_anywhere,
)

GIB = 1 << 30


def node(name: str = "n0", gpus: int = 4, cores: int = 8, mem: int = 64 * GIB, dist=None) -> Node:
    return Node(name, tuple(range(gpus)), tuple(range(cores)), mem, dist)


def job(id: int, **kw) -> Job:
    fields = dict(
        id=id,
        user="u",
        team="a",
        priority=4,
        gpus=1,
        cpus=1,
        mem_bytes=0,
        time_limit_s=math.inf,
        submit_time=0.0,
        state="queued",
    )
    fields.update(kw)
    return Job(**fields)


def running(id: int, devices, cores, start: float = 0.0, node_name: str = "n0", **kw) -> Job:
    kw.setdefault("gpus", len(devices))
    kw.setdefault("cpus", max(1, len(cores)))
    return job(
        id,
        state="running",
        start_time=start,
        node=node_name,
        devices=tuple(devices),
        cores=tuple(cores),
        **kw,
    )


def state(nodes, jobs, finished=None, usage=None, stopping=()) -> State:
    return State(tuple(nodes), tuple(jobs), finished or {}, usage or {}, frozenset(stopping))


def starts(actions) -> dict[int, Start]:
    return {a.job_id: a for a in actions if isinstance(a, Start)}


def of(kind, actions) -> list:
    return [a for a in actions if isinstance(a, kind)]


FIFO = PolicyConfig(policy="fifo", backfill=False)
PRIO = PolicyConfig(policy="priority", backfill=False)


# -- placement --------------------------------------------------------------------------------


def test_gang_gets_all_gpus_on_one_node_or_waits():
    nodes = [node("n0", gpus=2), node("n1", gpus=2)]
    st = state(nodes, [running(1, [0], [0], node_name="n0"), job(2, gpus=2)])
    # one GPU free on n0, two on n1: the gang goes to n1 whole
    assert starts(decide(st, 10, FIFO))[2].node == "n1"
    busy = state(
        nodes, [running(1, [0], [0], node_name="n0"), running(3, [0], [0], node_name="n1")]
    )
    blocked = replace(busy, jobs=(*busy.jobs, job(2, gpus=2)))
    assert decide(blocked, 10, FIFO) == []  # 2 GPUs free in all, never split over nodes


def test_no_gpu_or_core_is_given_twice():
    st = state(
        [node(gpus=4, cores=8)], [running(1, [0], [0, 1]), *(job(i, cpus=2) for i in (2, 3, 4))]
    )
    s = starts(decide(st, 0, FIFO))
    assert sorted(s) == [2, 3, 4]
    devices = [d for a in s.values() for d in a.devices]
    cores = [c for a in s.values() for c in a.cores]
    assert sorted(devices) == [1, 2, 3]
    assert len(set(cores)) == 6 and not {0, 1} & set(cores)
    # a fourth queued job finds nothing left
    assert 5 not in starts(decide(replace(st, jobs=(*st.jobs, job(5))), 0, FIFO))


def test_topology_close_gang():
    dist = {(0, 1): 1, (2, 3): 1, (0, 2): 3, (0, 3): 3, (1, 2): 3, (1, 3): 3}
    st = state([node(gpus=4, dist=dist)], [running(1, [1], [0]), job(2, gpus=2)])
    assert starts(decide(st, 0, FIFO))[2].devices == (2, 3)  # not the lowest ids (0, 2)
    plain = state([node(gpus=4)], [running(1, [1], [0]), job(2, gpus=2)])
    assert starts(decide(plain, 0, FIFO))[2].devices == (0, 2)


def test_wider_than_a_node_takes_whole_idle_nodes():
    nodes = [node(f"n{i}", gpus=2, cores=4) for i in range(3)]
    s = starts(decide(state(nodes, [job(1, gpus=4, cpus=8)]), 0, FIFO))[1]
    assert (s.node, s.devices, s.cores) == ("n0", (0, 1), (0, 1, 2, 3))
    assert s.extra == (Placement("n1", (0, 1), (0, 1, 2, 3)),)
    # with a 1-core job on n0 and on n1 only one node is idle: the wide job waits
    busy = [
        running(2, [], [0], node_name="n0", gpus=0),
        running(3, [], [0], node_name="n1", gpus=0),
    ]
    assert decide(state(nodes, [*busy, job(1, gpus=4)]), 0, FIFO) == []


def test_memory_request_checked_against_what_is_left():
    nodes = [node(mem=64 * GIB)]
    hog = running(1, [0], [0], mem_bytes=40 * GIB)
    assert decide(state(nodes, [hog, job(2, mem_bytes=30 * GIB)]), 0, FIFO) == []
    assert 2 in starts(decide(state(nodes, [hog, job(2, mem_bytes=20 * GIB)]), 0, FIFO))


def test_fits_anywhere_names_the_reason():
    nodes = (node("n0", gpus=4, cores=8, mem=64 * GIB),)
    assert fits_anywhere(job(1, gpus=4, cpus=8, mem_bytes=64 * GIB), nodes) is None
    assert "asks for 9 cores" in fits_anywhere(job(1, cpus=9), nodes)
    assert "memory" in fits_anywhere(job(1, mem_bytes=65 * GIB), nodes)
    assert fits_anywhere(job(1, gpus=5), nodes) == "job 1: asks for 5 GPUs, the cluster has 4"
    assert fits_anywhere(job(1, gpus=8), (*nodes, node("n1", gpus=4))) is None  # two whole nodes


# -- order ------------------------------------------------------------------------------------


def test_fifo_by_queue_time_then_id():
    jobs = [
        running(9, [0, 1, 2], [0]),
        job(3, submit_time=5),
        job(1, submit_time=5),
        job(2, submit_time=1),
    ]
    assert list(starts(decide(state([node()], jobs), 10, FIFO))) == [2]
    jobs[3] = job(2, submit_time=7)
    assert list(starts(decide(state([node()], jobs), 10, FIFO))) == [1]  # tie at 5: lower id


def test_priority_order_and_fifo_ignores_it():
    jobs = [
        running(9, [0, 1, 2], [0]),
        job(1, priority=2, submit_time=0),
        job(2, priority=7, submit_time=5),
    ]
    st = state([node()], jobs)
    assert list(starts(decide(st, 10, PRIO))) == [2]
    assert list(starts(decide(st, 10, FIFO))) == [1]


def test_ageing_past_max_wait_goes_first():
    jobs = [
        running(9, [0, 1, 2], [0]),
        job(1, priority=2, submit_time=50),
        job(2, priority=9, submit_time=190),
    ]
    st = state([node()], jobs)
    aged = replace(PRIO, max_wait_s=100)
    assert list(starts(decide(st, 200, aged))) == [1]  # waited 150 s > 100 s
    assert list(starts(decide(st, 140, aged))) == [2]  # waited 90 s: priority rules


def test_fair_share_orders_teams_by_usage():
    jobs = [running(9, [0, 1, 2], [0], team="c"), job(1, team="a"), job(2, team="b")]
    st = state([node()], jobs, usage={"a": 100.0, "b": 0.0})
    fair = PolicyConfig(policy="fair", backfill=False)
    assert list(starts(decide(st, 10, fair))) == [2]
    # a larger share makes the same usage count for less
    st = state([node()], jobs, usage={"a": 100.0, "b": 60.0})
    shares = replace(fair, shares={"a": 3.0})
    assert list(starts(decide(st, 10, shares))) == [1]


def test_same_state_same_decisions_whatever_the_job_order():
    jobs = [
        job(i, gpus=1 + i % 3, priority=i % 5, submit_time=i % 4, team="ab"[i % 2])
        for i in range(1, 30)
    ]
    st = state([node("n0"), node("n1")], jobs, usage={"a": 5.0})
    first = decide(st, 10, PolicyConfig())
    random.Random(0).shuffle(jobs)
    assert (
        decide(state([node("n0"), node("n1")], jobs, usage={"a": 5.0}), 10, PolicyConfig()) == first
    )
    assert len(starts(first)) > 0


# -- backfill ---------------------------------------------------------------------------------


BACKFILL = PolicyConfig(policy="fifo", backfill=True)


def test_backfill_fits_before_the_heads_reservation():
    # R holds 3 of 4 GPUs until t=100; head H needs 4 -> reserved at t=100 with nothing spare
    r = running(1, [0, 1, 2], [0], time_limit_s=100.0)
    head = job(2, gpus=4, submit_time=1)
    short = job(3, time_limit_s=50.0, submit_time=2)  # ends at 60 <= 100
    assert list(starts(decide(state([node()], [r, head, short]), 10, BACKFILL))) == [3]
    assert decide(state([node()], [r, head, short]), 10, FIFO) == []  # no backfill: strict order


def test_backfill_that_would_delay_the_head_is_refused():
    r = running(1, [0, 1, 2], [0], time_limit_s=100.0)
    head = job(2, gpus=4, submit_time=1)
    long = job(
        3, time_limit_s=200.0, submit_time=2
    )  # would end at 210 > 100, holding a GPU H needs
    assert decide(state([node()], [r, head, long]), 10, BACKFILL) == []
    endless = job(3, submit_time=2)  # no time limit: never known to end
    assert decide(state([node()], [r, head, endless]), 10, BACKFILL) == []


def test_backfill_may_use_what_the_reservation_leaves():
    # R holds 3 of 4 GPUs until t=100; the head needs 2 -> at t=100 two are spare
    r = running(1, [0, 1, 2], [0], time_limit_s=100.0)
    head = job(2, gpus=2, submit_time=1)
    long = job(3, time_limit_s=500.0, submit_time=2)
    assert starts(decide(state([node()], [r, head, long]), 10, BACKFILL))[3].devices == (3,)
    # on two nodes, a long job the head's node cannot spare goes to the other node
    r3 = running(1, [0, 1, 2], [0], time_limit_s=100.0)
    two = state([node(gpus=4), node("n1", gpus=1)], [r3, job(2, gpus=4, submit_time=1), long])
    assert starts(decide(two, 10, BACKFILL))[3].node == "n1"


def test_no_reservation_when_running_jobs_have_no_time_limit():
    r = running(1, [0, 1, 2], [0])  # no --time
    st = state(
        [node()], [r, job(2, gpus=4, submit_time=1), job(3, time_limit_s=5.0, submit_time=2)]
    )
    assert decide(st, 10, BACKFILL) == []


# -- dependencies -----------------------------------------------------------------------------


def test_dependency_waits_then_starts():
    after = job(2, after=(1,))
    assert decide(state([node()], [running(1, [0], [0]), after]), 0, FIFO) == []
    done = state([node()], [after], finished={1: "succeeded"})
    assert list(starts(decide(done, 0, FIFO))) == [2]


def test_dependency_failed_cancels_the_chain():
    jobs = [job(2, after=(1,)), job(3, after=(2,), state="held"), job(4, after=(99,))]
    acts = decide(state([node()], jobs, finished={1: "failed"}), 0, FIFO)
    assert acts == [
        Cancel(2, "dependency 1 failed"),
        Cancel(3, "dependency 2 was cancelled"),
        Cancel(4, "dependency 99 is unknown"),
    ]


def test_held_jobs_never_start():
    assert decide(state([node()], [job(1, state="held")]), 0, FIFO) == []


# -- time limits ------------------------------------------------------------------------------


def test_stop_past_time_limit_once():
    r = running(1, [0], [0], start=10.0, time_limit_s=100.0)
    assert decide(state([node()], [r]), 109.9, FIFO) == []
    assert decide(state([node()], [r]), 110.0, FIFO) == [Stop(1, "time limit of 100 s reached")]
    assert decide(state([node()], [r], stopping={1}), 120.0, FIFO) == []


# -- preemption -------------------------------------------------------------------------------


def _victims_state(extra):
    return state(
        [node(gpus=4)],
        [
            running(1, [0, 1], [0], start=0.0, priority=2, preemptible=True),
            running(2, [2], [1], start=10.0, priority=2, preemptible=True),
            running(3, [3], [2], start=20.0, priority=2, preemptible=False),
            *extra,
        ],
    )


def test_preempts_fewest_then_youngest_preemptible_lower_jobs():
    two = decide(_victims_state([job(9, gpus=2, priority=7)]), 30, PRIO)
    assert two == [Preempt(1, "for job 9 (priority 7 > 2)")]  # one victim frees 2: job 1
    one = decide(_victims_state([job(9, gpus=1, priority=7)]), 30, PRIO)
    assert one == [Preempt(2, "for job 9 (priority 7 > 2)")]  # youngest preemptible: 2, never 3
    three = decide(_victims_state([job(9, gpus=3, priority=7)]), 30, PRIO)
    assert sorted(a.job_id for a in of(Preempt, three)) == [1, 2]
    assert (
        decide(_victims_state([job(9, gpus=4, priority=7)]), 30, PRIO) == []
    )  # 3 is not preemptible


def test_no_preemption_of_equal_priority_under_fifo_or_when_off():
    assert decide(_victims_state([job(9, gpus=1, priority=2)]), 30, PRIO) == []
    assert decide(_victims_state([job(9, gpus=1, priority=7)]), 30, FIFO) == []
    off = replace(PRIO, preemption=False)
    assert decide(_victims_state([job(9, gpus=1, priority=7)]), 30, off) == []


def test_never_preempts_for_a_job_that_can_start_now():
    st = state(
        [node(gpus=4)], [running(1, [0], [0], priority=0, preemptible=True), job(9, priority=9)]
    )
    assert of(Preempt, decide(st, 0, PRIO)) == [] and 9 in starts(decide(st, 0, PRIO))


def test_high_job_waits_for_stopping_victims_then_starts():
    high = job(9, gpus=2, priority=7)
    first = _victims_state([high])
    assert of(Preempt, decide(first, 30, PRIO)) == [Preempt(1, "for job 9 (priority 7 > 2)")]
    # next call: 1 is in its grace period; nothing more is preempted, and a low job that fits
    # on the GPUs 1 frees does not take them
    grace = replace(
        first, stopping=frozenset({1}), jobs=(*first.jobs, job(10, priority=2, submit_time=40))
    )
    assert decide(grace, 35, PRIO) == []
    gone = replace(first, jobs=tuple(j for j in first.jobs if j.id != 1))
    assert starts(decide(gone, 61, PRIO))[9].devices == (0, 1)


def test_quota_borrow_and_reclaim():
    quotas = PolicyConfig(policy="fair", backfill=False, quotas={"a": 2, "b": 2})
    # b is idle: a borrows all four GPUs
    borrow = decide(state([node(gpus=4)], [job(i, team="a") for i in range(1, 5)]), 0, quotas)
    assert sorted(starts(borrow)) == [1, 2, 3, 4]
    a_running = [
        running(i, [i - 1], [i - 1], start=float(i), team="a", preemptible=True)
        for i in range(1, 5)
    ]
    # b asks for its guaranteed GPU: the youngest borrowed job of a is preempted
    acts = decide(state([node(gpus=4)], [*a_running, job(9, team="b")]), 10, quotas)
    assert acts == [Preempt(4, "quota reclaim for team b (job 9)")]
    # a within its quota is not touched by b beyond b's quota
    a_two = a_running[:2]
    full = [
        *a_two,
        running(5, [2], [2], team="b"),
        running(6, [3], [3], team="b"),
        job(9, team="b"),
    ]
    assert decide(state([node(gpus=4)], full), 10, quotas) == []


# -- fair-share arithmetic --------------------------------------------------------------------


def test_decay_usage_half_life_by_hand():
    usage = {"a": 100.0, "b": 8.0}
    assert decay_usage(usage, 3600, 3600) == {"a": 50.0, "b": 4.0}
    assert decay_usage(usage, 7200, 3600) == {"a": 25.0, "b": 2.0}
    assert decay_usage(usage, 0, 3600) == usage
    assert charge({"a": 1.0}, "b", 30.0) == {"a": 1.0, "b": 30.0}
    assert charge({"a": 1.0}, "a", 2.0) == {"a": 3.0}


def test_fair_factors_by_hand():
    # a used 3/4 of all with half the shares: 2 ** -(0.75 / 0.5) = 2 ** -1.5
    f = fair_factors({"a": 75.0, "b": 25.0}, {}, ["a", "b"])
    assert math.isclose(f["a"], 2**-1.5) and math.isclose(f["b"], 2**-0.5)
    assert fair_factors({}, {}, ["a", "b"]) == {"a": 1.0, "b": 1.0}
    f = fair_factors({"a": 50.0, "b": 50.0}, {"a": 3.0}, ["a", "b"])  # a: use 1/2, share 3/4
    assert math.isclose(f["a"], 2 ** -(0.5 / 0.75))


def test_free_gpus_are_held_for_a_job_waiting_on_its_victims():
    nodes = [node(gpus=5)]
    low = [
        running(1, [0, 1], [0], start=0.0, priority=2, preemptible=True),
        running(2, [2], [1], start=10.0, priority=2, preemptible=True),
        running(3, [3], [2], start=20.0, priority=2),
    ]
    high = job(9, gpus=2, priority=7)
    # GPU 4 is free: one more from the youngest preemptible job (2) is enough
    assert decide(state(nodes, [*low, high]), 30, PRIO) == [
        Preempt(2, "for job 9 (priority 7 > 2)")
    ]
    # in 2's grace period a small low job does not take GPU 4, which 9 waits to use
    small = job(10, priority=2, submit_time=31)
    assert decide(state(nodes, [*low, high, small], stopping={2}), 35, PRIO) == []
    assert starts(decide(state(nodes, [*low[:1], low[2], high, small]), 61, PRIO))[9].devices == (
        2,
        4,
    )


def test_decide_over_ten_thousand_queued_jobs_is_cheap():
    """benchmarks/jobs_policy.py measures 11-24 ms of CPU; 0.5 s is a bound that noise won't hit."""
    import time

    rng = random.Random(0)
    nodes = [node(f"n{i:03d}", gpus=8, cores=32) for i in range(128)]
    busy = [
        running(
            100_000 + 8 * i + g,
            [g],
            range(4 * g, 4 * g + 4),
            start=900.0,
            node_name=n.name,
            time_limit_s=rng.uniform(600, 36000),
            priority=rng.choice((2, 4, 7)),
            preemptible=rng.random() < 0.5,
        )
        for i, n in enumerate(nodes)
        for g in range(8)
    ]
    queued = [
        job(
            i,
            gpus=rng.choice((1, 1, 1, 2, 4, 8, 16)),
            cpus=4,
            priority=rng.choice((2, 4, 7)),
            team=f"t{rng.randrange(8)}",
            submit_time=rng.uniform(0, 1000),
            time_limit_s=rng.uniform(600, 36000),
        )
        for i in range(1, 10_001)
    ]
    st = state(nodes, busy + queued, usage={f"t{i}": 100.0 * i for i in range(8)})
    began = time.process_time()
    acts = decide(st, 1000.0, PolicyConfig(policy="fair", backfill=True))
    assert time.process_time() - began < 0.5
    assert all(isinstance(a, Preempt) for a in acts)  # a full cluster: nothing starts
