"""The server's loop and decode workers yield to the compute threads when they wake."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from tensorfab.serve.service import (
    BATCH_POLICY,
    ServerOptions,
    Service,
    restore_policy,
    yield_on_wake,
)

pytestmark = pytest.mark.skipif(BATCH_POLICY is None, reason="SCHED_BATCH is Linux's")


def _in_thread(work):
    out: list = []
    thread = threading.Thread(target=lambda: out.append(work()))
    thread.start()
    thread.join()
    return out[0]


def test_yield_on_wake_changes_the_calling_thread_only_and_is_given_back() -> None:
    def marked_then_restored() -> tuple:
        before = yield_on_wake()
        during = os.sched_getscheduler(0)
        restore_policy(before)
        return before, during, os.sched_getscheduler(0)

    mine = os.sched_getscheduler(0)
    assert _in_thread(marked_then_restored) == (os.SCHED_OTHER, os.SCHED_BATCH, os.SCHED_OTHER)
    assert os.sched_getscheduler(0) == mine  # the calling (main) thread was not touched


def test_decode_workers_yield_and_compute_threads_keep_the_default(tmp_path: Path) -> None:
    service = Service(ServerOptions(repository=tmp_path, compute_threads=1))
    try:
        decode = service.decoder.submit(os.sched_getscheduler, 0).result()
        compute = service.repo.executor.submit(os.sched_getscheduler, 0).result()
    finally:
        service.decoder.shutdown()
        service.repo.executor.shutdown()
    assert (decode, compute) == (os.SCHED_BATCH, os.SCHED_OTHER)


def test_the_loops_thread_yields_while_the_service_runs_and_is_given_back(tmp_path: Path) -> None:
    async def serve() -> tuple[int, int]:
        service = Service(ServerOptions(repository=tmp_path, compute_threads=1))
        await service.start()
        during = os.sched_getscheduler(0)
        await service.stop()
        return during, os.sched_getscheduler(0)

    assert _in_thread(lambda: asyncio.run(serve())) == (os.SCHED_BATCH, os.SCHED_OTHER)
