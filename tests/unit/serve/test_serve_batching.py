"""The batching decisions as pure logic with a fake clock; the asyncio loop with a fake runtime."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from tensorfab.serve.batching import (
    CALL_TOKENS,
    BatchPolicy,
    BatchStats,
    CallCost,
    DynamicBatcher,
    Pending,
    QueueFullError,
    RequestTimeoutError,
    expire,
    length_groups,
    merge,
    next_deadline,
    split,
    take_batch,
)

POLICY = BatchPolicy(max_batch_size=8, max_delay_s=0.010)
TEXT_POLICY = BatchPolicy(8, 0.05, max_padding=0.25)


def _queue(*rows_and_arrivals: tuple[int, float], deadline: float = 99.0) -> deque[Pending]:
    return deque(Pending({}, rows, t, deadline) for rows, t in rows_and_arrivals)


def test_waits_until_the_delay_then_takes_everything_that_fits() -> None:
    queue = _queue((2, 0.000), (3, 0.004))
    assert take_batch(queue, now=0.009, policy=POLICY) is None  # 9 ms < 10 ms, 5 rows < 8
    assert next_deadline(queue, POLICY) == pytest.approx(0.010)
    batch = take_batch(queue, now=0.010, policy=POLICY)
    assert [p.rows for p in batch] == [2, 3] and not queue


def test_a_full_batch_runs_at_once_and_leaves_the_rest_queued() -> None:
    queue = _queue((4, 0.0), (4, 0.001), (1, 0.002))
    batch = take_batch(queue, now=0.002, policy=POLICY)
    assert [p.rows for p in batch] == [4, 4]
    assert [p.rows for p in queue] == [1]


def test_a_request_that_does_not_fit_closes_the_batch_early() -> None:
    queue = _queue((5, 0.0), (5, 0.001))  # 10 rows > 8: the first goes alone, now
    assert [p.rows for p in take_batch(queue, now=0.001, policy=POLICY)] == [5]
    assert take_batch(queue, now=0.002, policy=POLICY) is None  # the second waits its delay
    assert [p.rows for p in take_batch(queue, now=0.012, policy=POLICY)] == [5]


def test_a_lone_request_at_an_idle_model_runs_without_waiting_for_company() -> None:
    lone = _queue((1, 0.0))
    assert take_batch(lone, now=0.0, policy=POLICY) is None  # a batch is running: it waits
    assert [p.rows for p in take_batch(lone, now=0.0, policy=POLICY, idle=True)] == [1]
    two = _queue((1, 0.0), (1, 0.001))  # concurrent traffic: the two wait to be batched
    assert take_batch(two, now=0.001, policy=POLICY, idle=True) is None
    assert [p.rows for p in take_batch(two, now=0.010, policy=POLICY, idle=True)] == [1, 1]


def test_batching_off_runs_each_request_alone_without_waiting() -> None:
    queue = _queue((1, 0.0), (1, 0.0))
    off = BatchPolicy(max_batch_size=0, max_delay_s=1.0)
    assert [p.rows for p in take_batch(queue, now=0.0, policy=off)] == [1]
    assert len(queue) == 1


def test_expired_requests_leave_the_queue_and_set_the_wakeup() -> None:
    queue = deque([Pending({}, 1, 0.0, 0.005), Pending({}, 1, 0.001, 0.5)])
    assert next_deadline(queue, POLICY) == pytest.approx(0.005)
    late = expire(queue, now=0.006)
    assert [p.deadline for p in late] == [0.005] and len(queue) == 1
    assert take_batch(deque(), 0.0, POLICY) is None and next_deadline(deque(), POLICY) is None


def test_merge_pads_token_inputs_and_split_returns_each_requests_own_positions() -> None:
    a = {"input_ids": np.array([[5, 6, 7]]), "attention_mask": np.array([[1, 1, 1]])}
    b = {"input_ids": np.array([[8], [9]]), "attention_mask": np.array([[1], [1]])}
    merged, slices = merge([a, b])
    assert merged["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0], [9, 0, 0]]
    assert merged["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0], [1, 0, 0]]
    assert slices == [(0, 1), (1, 2)]
    out = np.arange(3 * 3 * 2).reshape(3, 3, 2)  # [B, T, C]
    assert split(out, a, slices[0], per_position=True).shape == (1, 3, 2)
    part = split(out, b, slices[1], per_position=True)
    assert part.shape == (2, 1, 2) and part.tolist() == out[1:3, :1].tolist()
    assert split(out[:, 0], b, slices[1], per_position=False).shape == (2, 2)


def _tokens(*rows_and_lengths: tuple[int, int]) -> list[Pending]:
    return [
        Pending({"input_ids": np.ones((r, t), np.int64)}, r, 0.0, 9.0) for r, t in rows_and_lengths
    ]


def test_length_groups_keep_padding_within_the_bound_shortest_first() -> None:
    batch = _tokens((1, 10), (1, 40), (1, 11), (2, 12), (1, 44))
    groups = length_groups(batch, max_padding=0.25)
    # sorted: 10, 11, 12x2, 40, 44. {10, 11, 12x2}: 4 rows x 12 = 48 padded <= 1.25 x 45;
    # adding 40: 5 x 40 = 200 > 1.25 x 85. {40, 44}: 88 <= 1.25 x 84 = 105.
    assert [[length for p in g for length in [p.feed["input_ids"].shape[1]]] for g in groups] == [
        [10, 11, 12],
        [40, 44],
    ]
    assert sum(len(g) for g in groups) == len(batch)
    assert length_groups(batch, max_padding=0.0)[0] == [batch[0]]  # no padding at all allowed
    assert length_groups(batch, max_padding=None) == [batch]  # off: one batch, as it came
    assert len(length_groups(_tokens((1, 7), (3, 7), (2, 7)), max_padding=0.0)) == 1
    images = [Pending({"x": np.zeros((1, 1, 28, 28))}, 1, 0.0, 9.0) for _ in range(3)]
    assert length_groups(images, max_padding=0.0) == [images]


def _lengths(groups: list[list[Pending]]) -> list[list[int]]:
    return [[p.feed["input_ids"].shape[1] for p in g] for g in groups]


def test_length_groups_take_the_cheapest_split_by_a_calls_fixed_cost() -> None:
    batch = _tokens((1, 32), (1, 10), (1, 30), (1, 12))
    # each group costs call_tokens + rows x its longest. With 16: {10, 12} {30, 32} costs
    # 16 + 24 + 16 + 64 = 120, one group 16 + 128 = 144, four alone 4 x 16 + 84 = 148.
    assert _lengths(length_groups(batch, 4.0, call_tokens=16)) == [[10, 12], [30, 32]]
    # with 100 one call (228) beats two (288): when the padding bound allows it
    assert _lengths(length_groups(batch, 4.0, call_tokens=100)) == [[10, 12, 30, 32]]
    assert _lengths(length_groups(batch, 0.25, call_tokens=100)) == [[10, 12], [30, 32]]
    # with no fixed cost padding is all that counts: each alone (84 < 24 + 64)
    assert _lengths(length_groups(batch, 4.0, call_tokens=0)) == [[10], [12], [30], [32]]


def test_call_cost_fits_a_calls_fixed_part_in_positions() -> None:
    cost = CallCost()
    assert cost.call_tokens() == CALL_TOKENS  # nothing seen yet
    for positions in (40, 40, 40, 40, 40, 40, 40, 40, 40):
        cost.add(positions, 0.002 + 1e-4 * positions)
    assert cost.call_tokens() == CALL_TOKENS  # one size only: no line to fit
    for positions in (10, 100, 25, 70):
        cost.add(positions, 0.002 + 1e-4 * positions)  # 2 ms fixed = 20 positions
    assert cost.call_tokens() == pytest.approx(20.0)
    falling = CallCost()
    for positions in range(10, 200, 10):
        falling.add(positions, 0.01 - 1e-5 * positions)  # not a cost: the default stays
    assert falling.call_tokens() == CALL_TOKENS
    dear = CallCost()
    for positions in range(10, 200, 10):
        dear.add(positions, 1.0 + 1e-6 * positions)  # a fixed part of 10^6 positions
    assert dear.call_tokens() == 512.0  # held below MAX_CALL_TOKENS


def test_a_batch_reports_its_taken_requests_once_and_fits_its_calls() -> None:
    stats: list[BatchStats] = []

    batcher = _four_texts_served(lambda feed: feed["input_ids"][..., None] * 1.0, stats.append)
    assert [(s.rows, s.taken) for s in stats] == [(2, 4), (2, 0)]  # two groups of one batch
    assert batcher.cost.sums[0] == pytest.approx(1.0 + 0.98)  # two calls, the first decayed
    assert batcher.cost.sums[1] == pytest.approx(2 * 4 * 0.98 + 2 * 31)  # their positions


def _four_texts_served(run: Any, on_batch: Any) -> DynamicBatcher:
    """A text batcher that served four one-text requests of 30, 3, 31 and 4 tokens at once
    (two length groups), stopped."""

    async def main() -> DynamicBatcher:
        batcher = _batcher(run, policy=TEXT_POLICY, per_position=True, on_batch=on_batch)
        batcher.start()
        feeds = [{"input_ids": np.full((1, t), t, np.int64)} for t in (30, 3, 31, 4)]
        await asyncio.gather(*(batcher.submit(f, 1, 5.0) for f in feeds))
        await batcher.stop()
        return batcher

    return asyncio.run(main())


def _busy(seconds: float) -> None:
    """Spend ``seconds`` of this thread's CPU time (what the fit reads), not wall time."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_groups_fitted_cost_counts_the_loops_hand_back_as_well_as_the_call() -> None:
    # the call costs the worker 4 ms, the group's hand-back (here its metrics) 6 ms of the
    # loop's CPU: each group is fitted at about 10 ms, not at its call's 4
    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        _busy(0.004)
        return feed["input_ids"][..., None] * 1.0

    batcher = _four_texts_served(run, lambda s: _busy(0.006))
    weight, seconds = batcher.cost.sums[0], batcher.cost.sums[2]
    assert weight == pytest.approx(1.98)  # two groups were fitted
    assert 0.0098 <= seconds / weight < 0.03  # each at its call and its hand-back


def test_a_batch_of_mixed_lengths_runs_as_length_groups_and_answers_each_request() -> None:
    seen: list[tuple[int, ...]] = []

    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        seen.append(feed["input_ids"].shape)
        return feed["input_ids"][..., None] * 2.0  # [B, T, 1]: a per-position output

    async def main() -> list[np.ndarray]:
        batcher = _batcher(run, policy=TEXT_POLICY, per_position=True)
        batcher.start()
        feeds = [{"input_ids": np.full((1, t), t, np.int64)} for t in (30, 3, 31, 4)]
        out = await asyncio.gather(*(batcher.submit(f, 1, 5.0) for f in feeds))
        await batcher.stop()
        return out

    out = asyncio.run(main())
    assert seen == [(2, 4), (2, 31)]  # {3, 4} and {30, 31}, not one 4 x 31 batch
    assert [o.shape for o in out] == [(1, 30, 1), (1, 3, 1), (1, 31, 1), (1, 4, 1)]
    assert [float(o.max()) for o in out] == [60.0, 6.0, 62.0, 8.0]


def _batcher(run, **kw) -> DynamicBatcher:
    return DynamicBatcher(
        run=run,
        policy=kw.pop("policy", BatchPolicy(8, 0.05)),
        max_queue_size=kw.pop("max_queue_size", 16),
        per_position=kw.pop("per_position", False),
        executor=ThreadPoolExecutor(2),
        **kw,
    )


def test_concurrent_requests_share_one_batch_and_get_their_own_rows() -> None:
    calls: list[int] = []

    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        calls.append(len(feed["x"]))
        return feed["x"] * 10.0

    async def main() -> list[np.ndarray]:
        batcher = _batcher(run)
        batcher.start()
        feeds = [{"x": np.array([[float(i)]] * (1 + i % 2))} for i in range(4)]
        out = await asyncio.gather(*(batcher.submit(f, len(f["x"]), 5.0) for f in feeds))
        await batcher.stop()
        return out

    out = asyncio.run(main())
    assert calls == [6]  # 1 + 2 + 1 + 2 rows in one batch
    assert [o.ravel().tolist() for o in out] == [[0.0], [10.0, 10.0], [20.0], [30.0, 30.0]]


def test_a_lone_request_is_answered_without_the_batching_delay() -> None:
    async def main() -> np.ndarray:
        # an hour's delay on a clock that never moves: waiting for it would never end
        batcher = _batcher(lambda feed: feed["x"] + 1.0, policy=BatchPolicy(8, 3600.0))
        batcher.clock = lambda: 0.0
        batcher.start()
        out = await asyncio.wait_for(batcher.submit({"x": np.zeros((1, 1))}, 1, 5.0), 2.0)
        await batcher.stop()
        return out

    assert asyncio.run(main()).tolist() == [[1.0]]


def test_after_a_batch_of_several_a_first_request_back_waits_for_the_others() -> None:
    # A closed loop of clients: the first answered client's next request, taken alone at
    # once, cost a whole call for one request, every other batch. A lone client (batches of
    # one) is still answered without the delay.
    calls: list[int] = []

    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        calls.append(len(feed["x"]))
        return feed["x"]

    async def main() -> list[float]:
        batcher = _batcher(run, policy=BatchPolicy(8, 0.3))
        batcher.start()
        one = {"x": np.ones((1, 1))}
        await asyncio.gather(*(batcher.submit(one, 1, 5.0) for _ in range(3)))
        first = asyncio.create_task(batcher.submit(one, 1, 5.0))  # back from the batch of 3
        await asyncio.sleep(0.05)
        await asyncio.gather(first, batcher.submit(one, 1, 5.0))  # ... joined by another
        waited = []
        for _ in range(2):  # then one client alone: one waits, being the first after 2 ...
            start = time.monotonic()
            await batcher.submit(one, 1, 5.0)
            waited.append(time.monotonic() - start)
        await batcher.stop()
        return waited

    waited = asyncio.run(main())
    assert calls == [3, 2, 1, 1]
    assert waited[0] >= 0.25 and waited[1] < 0.2  # ... and the next runs at once


def test_full_queue_refuses_and_late_requests_time_out_while_the_runtime_is_busy() -> None:
    gate = threading.Event()

    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        gate.wait(5)
        return feed["x"]

    async def main() -> tuple[list, BaseException | None]:
        batcher = _batcher(run, policy=BatchPolicy(1, 0.0), max_queue_size=2)
        batcher.start()
        first = asyncio.create_task(batcher.submit({"x": np.ones((1, 1))}, 1, 5.0))
        await asyncio.sleep(0.05)  # the first is now computing, the queue is empty
        waiting = [
            asyncio.create_task(batcher.submit({"x": np.ones((1, 1))}, 1, t)) for t in (0.05, 5.0)
        ]
        await asyncio.sleep(0)
        with pytest.raises(QueueFullError, match="queue full"):
            await batcher.submit({"x": np.ones((1, 1))}, 1, 5.0)
        await asyncio.sleep(0.1)  # past the first waiting request's deadline
        gate.set()
        results = await asyncio.gather(first, *waiting, return_exceptions=True)
        await batcher.stop()
        return results, None

    results, _ = asyncio.run(main())
    assert isinstance(results[0], np.ndarray)
    assert isinstance(results[1], RequestTimeoutError) and "timed out" in str(results[1])
    assert isinstance(results[2], np.ndarray)


def test_a_failing_runtime_fails_its_batch_and_the_next_batch_still_runs() -> None:
    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        if feed["x"][0, 0] < 0:
            raise RuntimeError("bad input for the runtime")
        return feed["x"]

    async def main() -> list:
        batcher = _batcher(run, policy=BatchPolicy(0, 0.0))
        batcher.start()
        bad = batcher.submit({"x": -np.ones((1, 1))}, 1, 5.0)
        good = batcher.submit({"x": np.ones((1, 1))}, 1, 5.0)
        out = await asyncio.gather(bad, good, return_exceptions=True)
        await batcher.stop()
        return out

    bad, good = asyncio.run(main())
    assert isinstance(bad, RuntimeError) and good.tolist() == [[1.0]]


def test_stop_finishes_queued_requests_without_waiting_for_the_delay() -> None:
    async def main() -> tuple[np.ndarray, float]:
        batcher = _batcher(lambda f: f["x"], policy=BatchPolicy(8, 30.0))
        batcher.start()
        pending = asyncio.create_task(batcher.submit({"x": np.ones((1, 1))}, 1, 60.0))
        await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await batcher.stop()
        return await pending, loop.time() - start

    out, took = asyncio.run(main())
    assert out.tolist() == [[1.0]] and took < 5.0


def test_a_batch_the_runtime_fails_on_is_rerun_alone_so_only_the_faulty_request_fails() -> None:
    calls: list[list[float]] = []
    recorded: list[int] = []

    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        calls.append(feed["x"][:, 0].tolist())
        if (feed["x"] < 0).any():
            raise RuntimeError("index out of range in the runtime")
        return feed["x"] * 10.0

    async def main() -> list:
        batcher = _batcher(run, on_batch=lambda stats: recorded.append(stats.rows))
        batcher.start()
        values = [1.0, 2.0, -3.0, 4.0]
        feeds = [{"x": np.array([[v]])} for v in values]
        out = await asyncio.gather(
            *(batcher.submit(f, 1, 5.0) for f in feeds), return_exceptions=True
        )
        await batcher.stop()
        return out

    out = asyncio.run(main())
    assert calls == [[1.0, 2.0, -3.0, 4.0], [1.0], [2.0], [-3.0], [4.0]]
    assert [o.tolist() for o in (out[0], out[1], out[3])] == [[[10.0]], [[20.0]], [[40.0]]]
    assert isinstance(out[2], RuntimeError) and str(out[2]) == "index out of range in the runtime"
    assert recorded == [1, 1, 1]  # the metrics count the three requests that ran


def test_isolation_reruns_within_a_length_group_and_trims_each_answer() -> None:
    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        if (feed["input_ids"] > 1000).any():
            raise RuntimeError("Gather idx=99999 out of bounds")
        return feed["input_ids"][..., None] * 1.0

    async def main() -> list:
        batcher = _batcher(run, policy=TEXT_POLICY, per_position=True)
        batcher.start()
        feeds = [
            {"input_ids": np.array([[5, 6, 7]])},
            {"input_ids": np.array([[8, 99999, 9]])},
            {"input_ids": np.array([[4, 3]])},
        ]
        out = await asyncio.gather(
            *(batcher.submit(f, 1, 5.0) for f in feeds), return_exceptions=True
        )
        await batcher.stop()
        return out

    good, bad, short = asyncio.run(main())
    assert good.shape == (1, 3, 1) and good.ravel().tolist() == [5.0, 6.0, 7.0]
    assert short.shape == (1, 2, 1) and short.ravel().tolist() == [4.0, 3.0]
    assert isinstance(bad, RuntimeError) and "Gather idx=99999" in str(bad)
