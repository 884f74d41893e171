"""Dynamic batching: requests queue per model version and run together as one batch.

The decisions are pure functions of the queue and the time (:func:`take_batch`,
:func:`expire`, :func:`merge`, :func:`split`), so they are tested with a fake clock and no
sleeps; :class:`DynamicBatcher` is the small asyncio loop around them. A batch starts when
its rows reach ``max_batch_size`` or when its oldest request has waited
``max_queue_delay_us``. Variable-length inputs (token ids) are then run as sub-batches of
similar length (:func:`length_groups`), each padded to its own longest request, and each
request gets back exactly its own rows and positions: padding a whole batch of real
sentences to its longest one computes mostly padding (README, "Measured", has the figures).
The split is the cheapest by the runtime's own costs, a call's fixed cost against its
padded positions, fitted from the groups it computes (:class:`CallCost`).
The queue is bounded: a full queue rejects at once (the server answers 429) instead of
building a backlog that would time out anyway. When the runtime fails on a batch of
several requests, each is run again alone, so one faulty request fails alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

Feed = dict[str, np.ndarray]
CALL_TOKENS = 16.0  # a runtime call's fixed cost in padded positions, until one is fitted
MAX_CALL_TOKENS = 512.0  # a fitted cost is held below this (a noisy fit cannot merge all)


class QueueFullError(Exception):
    """The model's queue holds ``max_queue_size`` requests already."""


class BatcherStoppedError(Exception):
    """The batcher is stopping (its model was reloaded or unloaded): take the new one."""


class RequestTimeoutError(Exception):
    """The request waited past its deadline before it could run."""


@dataclass
class Pending:
    """One queued request: its inputs (each [rows, ...]) and when it came and must end."""

    feed: Feed
    rows: int
    arrival: float
    deadline: float
    future: Any = None  # asyncio.Future set with the request's outputs
    started: float | None = None
    nbytes: int = 0  # of its inputs, counted against the queue's byte bound


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int  # 0: no batching, each request runs alone
    max_delay_s: float
    max_padding: float | None = None  # None: one sub-batch, padded to the batch's longest

    def fits(self, rows: int) -> bool:
        return self.max_batch_size == 0 or rows <= self.max_batch_size


@dataclass
class CallCost:
    """What a runtime call costs, fitted as the batcher computes: CPU seconds = fixed +
    per_position x padded positions, by least squares over the groups computed so far, the
    older ones weighing less (``decay`` per group). ``call_tokens`` is the fixed part in
    positions, which :func:`length_groups` weighs against padding: fitted on minilm-l6's
    served groups it was 53-54 positions on PyTorch eager and 8-21 on ONNX Runtime
    (``benchmarks/serve_groups.py``), so one constant would split PyTorch's batches into
    too many calls or ONNX's into too few. A group's time is what it costs the server's
    threads: the worker's merge and call, plus the loop's hand-back of its answers (each
    request's part, the futures, the group's metrics), which a fast runtime's small calls
    pay as much as a slow one's. The worker's time is its own thread's: a runtime that computes
    in other threads (a GPU, several CPU threads) shows less per position, so its fixed
    part reads larger and its groups come larger, as such runtimes want them."""

    decay: float = 0.98  # the fit follows about the last 50 groups
    min_weight: float = 8.0  # groups (weighted) before the fit is used
    sums: tuple[float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0)

    def add(self, positions: int, seconds: float) -> None:
        """One computed group: its padded positions and the CPU seconds it cost."""
        d = self.decay
        n, x, y, xx, xy = self.sums
        self.sums = (  # one assignment, on the loop (which reads it for the next split)
            d * n + 1.0,
            d * x + positions,
            d * y + seconds,
            d * xx + positions * positions,
            d * xy + positions * seconds,
        )

    def call_tokens(self) -> float:
        """The fitted fixed cost in positions; ``CALL_TOKENS`` while too few groups (or
        groups of one size only) were seen or the fit is not a rising line."""
        n, x, y, xx, xy = self.sums
        spread = n * xx - x * x
        if n < self.min_weight or spread <= 1e-9 * n * xx:
            return CALL_TOKENS
        per_position = (n * xy - x * y) / spread
        if per_position <= 0.0:
            return CALL_TOKENS
        fixed = (y - per_position * x) / n
        return min(max(fixed / per_position, 0.0), MAX_CALL_TOKENS)


def expire(queue: deque[Pending], now: float) -> list[Pending]:
    """Remove and return the requests whose deadline has passed."""
    late = [p for p in queue if p.deadline <= now]
    for p in late:
        queue.remove(p)
    return late


def take_batch(
    queue: deque[Pending], now: float, policy: BatchPolicy, idle: bool = False
) -> list[Pending] | None:
    """The requests to run now (oldest first), or None to wait for more.

    Runs when the rows waiting fill ``max_batch_size`` or the oldest request has waited
    ``max_delay_s``; takes whole requests in arrival order while their rows fit. A lone
    request at an ``idle`` model (no batch of it running) runs at once: at low load the
    company it would wait for does not come, and the wait was all of its queue time (the
    default 2 ms, beside a 3 ms int8 forward pass of minilm-l6 on a BANKING77 query); two
    or more queued requests mean concurrent traffic, and they wait to fill the batch.
    """
    if not queue:
        return None
    if policy.max_batch_size == 0:
        return [queue.popleft()]
    count, rows = 0, 0
    for p in queue:
        if rows + p.rows > policy.max_batch_size:
            break
        count, rows = count + 1, rows + p.rows
    full = count < len(queue) or rows >= policy.max_batch_size
    lone = idle and len(queue) == 1
    if not full and not lone and now - queue[0].arrival < policy.max_delay_s:
        return None
    return [queue.popleft() for _ in range(count)]


def next_deadline(queue: deque[Pending], policy: BatchPolicy) -> float | None:
    """When the loop must look at the queue again without a new arrival."""
    if not queue:
        return None
    return min(queue[0].arrival + policy.max_delay_s, min(p.deadline for p in queue))


def length_of(feed: Feed) -> int:
    """A request's positions per row: the second axis of its first input (1 when it has none)."""
    first = next(iter(feed.values()))
    return int(first.shape[1]) if first.ndim >= 2 else 1


def padded_positions(feed: Feed) -> int:
    """A merged feed's rows times its positions per row (what its call computes)."""
    return len(next(iter(feed.values()))) * length_of(feed)


def length_groups(
    batch: list[Pending], max_padding: float | None, call_tokens: float = CALL_TOKENS
) -> list[list[Pending]]:
    """Split a batch into sub-batches of similar length, shortest first.

    Requests are sorted by length and each sub-batch is padded to its longest request,
    which must keep its padded positions within ``(1 + max_padding)`` times the positions
    its requests bring. Among the splits that keep that bound, the one with the least
    estimated compute is run: a sub-batch costs its padded positions plus ``call_tokens``,
    a runtime call's fixed cost counted in positions. (A transformer's attention adds a
    cost per row growing with the length squared, but next to its dense layers it is a
    few per cent at sentence lengths, so positions stand for the cost.) Equal lengths
    (images, fixed-length text) always stay one sub-batch; ``None`` keeps the whole batch.
    """
    if max_padding is None or len(batch) < 2:
        return [batch]
    ranked = sorted(batch, key=lambda p: length_of(p.feed))
    rows = [p.rows for p in ranked]
    cuts = cheapest_cuts(rows, [length_of(p.feed) for p in ranked], max_padding, call_tokens)
    return [ranked[a:b] for a, b in itertools.pairwise(cuts)]


def cheapest_cuts(
    rows: list[int], lengths: list[int], max_padding: float, call_tokens: float
) -> list[int]:
    """Where to cut requests sorted by length into groups (the first index of each group
    and the end): the cheapest split, by dynamic programming over the group ends."""
    best = [0.0] + [float("inf")] * len(rows)
    start_of = [0] * (len(rows) + 1)
    for end in range(1, len(rows) + 1):
        count = positions = 0
        for start in range(end - 1, -1, -1):  # the group grows shorter requests downward
            count, positions = count + rows[start], positions + rows[start] * lengths[start]
            padded = count * lengths[end - 1]
            if padded > (1.0 + max_padding) * positions:  # only grows from here on
                break
            if best[start] + call_tokens + padded <= best[end]:  # ties: the larger group
                best[end], start_of[end] = best[start] + call_tokens + padded, start
    cuts = [len(rows)]
    while cuts[-1]:
        cuts.append(start_of[cuts[-1]])
    return cuts[::-1]


def merge(feeds: list[Feed]) -> tuple[Feed, list[tuple[int, int]]]:
    """Concatenate requests along the batch axis, zero-padding any shorter trailing axis.

    Zero is the pad token id and a masked position, so padded token positions change no
    real position's output. Each input is written once into a batch array made at its
    final size (a lone request's writable arrays are passed on as they are). Returns the
    merged inputs and each request's (start, rows).
    """
    slices, start = [], 0
    for f in feeds:
        rows = len(next(iter(f.values())))
        slices.append((start, rows))
        start += rows
    if len(feeds) == 1:  # read-only arrays (views of a binary body) copied: runtimes may write
        return {k: a if a.flags.writeable else a.copy() for k, a in feeds[0].items()}, slices
    merged: Feed = {}
    for name in feeds[0]:
        arrays = [f[name] for f in feeds]
        longest = np.max([a.shape for a in arrays], axis=0)
        out = np.zeros((start, *longest[1:]), dtype=arrays[0].dtype)
        for a, (first, rows) in zip(arrays, slices, strict=True):
            out[(slice(first, first + rows), *(slice(0, n) for n in a.shape[1:]))] = a
        merged[name] = out
    return merged, slices


def split(output: np.ndarray, feed: Feed, where: tuple[int, int], per_position: bool) -> np.ndarray:
    """One request's rows of a batch output; per-position outputs trimmed to its length."""
    start, rows = where
    part = output[start : start + rows]
    if per_position:  # [B, T, C]: keep the request's own T positions
        length = next(iter(feed.values())).shape[1]
        part = part[:, :length]
    return part


@dataclass(frozen=True)
class GroupCall:
    """What the worker measured of one computed group, for the loop: its padded positions,
    the CPU seconds of its merge and runtime call, and the requests taken with its batch
    (on a batch's first group only)."""

    positions: int
    cpu_s: float
    taken: int = 0


@dataclass
class BatchStats:
    """What one batch did, for the metrics: rows, per-request queue time, compute time."""

    rows: int
    queue_s: list[float]
    compute_s: float
    taken: int = 0  # on a batch's first group: the requests taken from the queue with it


@dataclass(eq=False)  # one batcher is one queue: compared and hashed by identity
class DynamicBatcher:
    """The asyncio side: a bounded queue and ``instances`` loops that run batches in threads."""

    run: Callable[[Feed], np.ndarray]
    policy: BatchPolicy
    max_queue_size: int
    per_position: bool
    executor: Executor
    max_queue_bytes: int | None = None  # None: bounded by requests only
    instances: int = 1
    on_batch: Callable[[BatchStats], None] = lambda stats: None
    clock: Callable[[], float] = time.monotonic
    queue: deque[Pending] = field(default_factory=deque)
    _wake: asyncio.Event | None = None
    _tasks: list[asyncio.Task] = field(default_factory=list)
    _closing: bool = False
    queued_bytes: int = 0
    _running: int = 0  # batches being computed now, by all instances
    # requests in the last batch taken: after a batch of several, their clients are likely
    # to send again at once (a closed loop), so a first one back is not "lone" (below)
    _last_taken: int = 0
    cost: CallCost = field(default_factory=CallCost)  # fitted as groups are computed

    @property
    def closing(self) -> bool:
        return self._closing

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._tasks = [asyncio.create_task(self._loop()) for _ in range(self.instances)]

    async def submit(self, feed: Feed, rows: int, timeout_s: float) -> np.ndarray:
        """Queue one request and wait for its own part of the batch output."""
        if self._closing:
            raise BatcherStoppedError("the model is unloading")
        if len(self.queue) >= self.max_queue_size:
            raise QueueFullError(f"queue full ({self.max_queue_size} requests waiting)")
        nbytes = sum(a.nbytes for a in feed.values())
        limit = self.max_queue_bytes
        if limit is not None and self.queue and self.queued_bytes + nbytes > limit:
            raise QueueFullError(f"queue full ({self.queued_bytes} bytes waiting, limit {limit})")
        now = self.clock()
        future = asyncio.get_running_loop().create_future()
        pending = Pending(feed, rows, now, now + timeout_s, future, nbytes=nbytes)
        self.queue.append(pending)
        self.queued_bytes += nbytes
        assert self._wake is not None
        self._wake.set()
        return await pending.future

    async def stop(self) -> None:
        """Finish every queued request, then end the loops (graceful shutdown, unload)."""
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _loop(self) -> None:
        assert self._wake is not None
        while not (self._closing and not self.queue):
            now = self.clock()
            for late in expire(self.queue, now):
                self.queued_bytes -= late.nbytes
                _fail(
                    late,
                    RequestTimeoutError(f"timed out after {now - late.arrival:.3f} s in queue"),
                )
            policy = self.policy if not self._closing else replace(self.policy, max_delay_s=0.0)
            # a lone request runs at once only at low load: nothing running, and the last
            # batch was one request too. After a batch of 31 (minilm-l6 on PyTorch, 32
            # clients) the first answered client's next request, taken alone, cost a whole
            # call for one request: 19 of 42 batches were of one; it now waits (at most
            # max_queue_delay) for the others answered with it
            idle = self._running == 0 and self._last_taken <= 1
            batch = take_batch(self.queue, now, policy, idle=idle)
            if batch is None:
                await self._sleep(next_deadline(self.queue, policy), now)
                continue
            self._last_taken = len(batch)
            self.queued_bytes -= sum(p.nbytes for p in batch)
            await self._compute(batch)

    async def _sleep(self, until: float | None, now: float) -> None:
        assert self._wake is not None
        self._wake.clear()
        timeout = None if until is None else max(0.0, until - now)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):  # no task per wait, as wait_for made
                await self._wake.wait()

    async def _compute(self, batch: list[Pending]) -> None:
        """Run the batch's length groups one after the other in one hand-over to a thread
        (a hand-over per group cost as much as a small group's forward pass on one core);
        each group's requests get their answers as soon as it is computed."""
        self._running += 1
        try:
            groups = length_groups(batch, self.policy.max_padding, self.cost.call_tokens())
            loop = asyncio.get_running_loop()
            done, error = await loop.run_in_executor(self.executor, self._run_groups, groups, loop)
            if error is not None:  # the runtime failed on group ``done``: see _compute_group
                await self._isolate(groups[done], error)
                for group in groups[done + 1 :]:
                    await self._compute_group(group)
        finally:
            self._running -= 1

    def _run_groups(
        self, groups: list[list[Pending]], loop: asyncio.AbstractEventLoop
    ) -> tuple[int, Exception | None]:
        """In the worker thread: compute each group and hand its outputs to the loop; stops
        at the first group the runtime fails on: (its index, the error), else (n, None)."""
        taken = sum(len(g) for g in groups)
        for done, group in enumerate(groups):
            start, cpu = self.clock(), time.thread_time()
            feed, slices = merge([p.feed for p in group])
            try:
                out = self.run(feed)
            except Exception as exc:
                return done, exc
            call = GroupCall(padded_positions(feed), time.thread_time() - cpu, taken * (done == 0))
            loop.call_soon_threadsafe(self._deliver, group, out, slices, start, call)
        return len(groups), None

    def _deliver(
        self,
        batch: list[Pending],
        out: np.ndarray,
        slices: list[tuple[int, int]],
        start: float,
        call: GroupCall | None = None,
    ) -> None:
        """Each request's own part of a computed group (on the loop), and the group's stats;
        a group of the cost split (``call``) is fitted with what the loop spent on it here."""
        compute, cpu = self.clock() - start, time.thread_time()
        for p, where in zip(batch, slices, strict=True):
            if not p.future.done():
                p.future.set_result(split(out, p.feed, where, self.per_position))
        rows, taken = sum(p.rows for p in batch), call.taken if call else 0
        self.on_batch(BatchStats(rows, [start - p.arrival for p in batch], compute, taken))
        if call is not None:  # its merge and call (worker) and its hand-back (here)
            self.cost.add(call.positions, call.cpu_s + time.thread_time() - cpu)

    async def _compute_group(self, batch: list[Pending]) -> None:
        """Run one sub-batch; if the runtime fails on it, run its requests one by one.

        Requests are checked before they queue, but a runtime can still fail on one of
        them (an input no check foresaw). Merged into a batch, that one request would fail
        every request it was batched with, which did nothing wrong; re-running each alone
        lets exactly the faulty ones fail, at the cost of a slower batch only when
        something already went wrong.
        """
        start = self.clock()
        feed, slices = merge([p.feed for p in batch])
        try:
            out = await asyncio.get_running_loop().run_in_executor(self.executor, self.run, feed)
        except Exception as exc:
            await self._isolate(batch, exc)
            return
        self._deliver(batch, out, slices, start)

    async def _isolate(self, batch: list[Pending], exc: Exception) -> None:
        """After the runtime failed on ``batch`` with ``exc``: each request run alone."""
        if len(batch) == 1:  # alone already: this request is the faulty one
            _fail(batch[0], exc)
            return
        for p in batch:
            await self._compute_group([p])


def _fail(pending: Pending, exc: Exception) -> None:
    if pending.future is not None and not pending.future.done():
        pending.future.set_exception(exc)
