"""Handing predict's decoding to worker threads in groups: each caller still gets its own
result or error, and calls made while a worker is busy share one hand-over."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tensorfab.serve.handoff import Handoff


class CountingPool(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(1)
        self.submitted = 0

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        self.submitted += 1
        return super().submit(*args, **kwargs)


def test_calls_queued_while_a_worker_is_busy_go_over_in_one_group() -> None:
    pool, gate = CountingPool(), threading.Event()
    groups: list[str] = []

    def work(x: int) -> int:
        if x == 0:
            gate.wait(5)  # the first call holds the worker until the others are queued
        groups.append(threading.current_thread().name)
        if x == 3:
            raise ValueError("request 3: malformed")
        return x * 10

    async def main() -> list[Any]:
        handoff = Handoff(pool)
        first = asyncio.ensure_future(handoff.run(work, 0))
        await asyncio.sleep(0.05)  # the worker has taken call 0 and waits
        rest = [asyncio.ensure_future(handoff.run(work, x)) for x in (1, 2, 3, 4)]
        await asyncio.sleep(0)
        gate.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    try:
        out = asyncio.run(main())
    finally:
        pool.shutdown()
    assert out[:3] == [0, 10, 20] and out[4] == 40
    assert isinstance(out[3], ValueError) and str(out[3]) == "request 3: malformed"
    assert pool.submitted == 1  # one worker drained all five: two groups, one hand-over
    assert len(groups) == 5


def test_a_shut_down_pool_refuses_at_once_and_keeps_no_call_waiting() -> None:
    pool = ThreadPoolExecutor(1)
    pool.shutdown()

    async def main() -> None:
        handoff = Handoff(pool)
        for _ in range(2):  # the first refusal left nothing behind
            with pytest.raises(RuntimeError, match="after shutdown"):
                await asyncio.wait_for(handoff.run(abs, -1), 1)

    asyncio.run(main())
