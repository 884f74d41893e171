"""The outermost layer of the app: every request counted, no exception let out, logs bounded.

An exception that leaves a route would reach uvicorn, which logs its whole traceback and
closes the connection, so a pooled client loses the valid request it sends next. Here it is
answered ``500 {"error": ...}`` on a connection that stays open, and logged as one line at
most ``LOG_BURST`` times per ``LOG_WINDOW_S`` per kind, with a count of the lines left out.
A client that goes away mid-request is counted, never logged. :class:`RequestTally` says at
shutdown how many requests were answered and how many were cut; :meth:`guard.cut_in_flight`
(called when the graceful timeout has passed) stops the requests still running and answers
each one ``503`` with ``Connection: close``, so a cut request is a clean refusal, never
uvicorn's 500 of a cancelled task.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

LOG = logging.getLogger("tensorfab.serve")
LOG_BURST = 5  # lines per kind of error in one window
LOG_WINDOW_S = 60.0
CUT = "tensorfab: the graceful timeout passed"  # the cancel message of a cut request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class RequestTally:
    """Requests seen by the server: answered, cut (cancelled or failed mid-answer), open."""

    answered: int = 0
    errors: int = 0  # answered 500 (an exception no route handled)
    cut: int = 0  # cancelled before their answer was complete (shutdown, client gone)
    in_flight: int = 0

    def summary(self) -> str:
        errors = f" ({self.errors} internal errors)" if self.errors else ""
        return f"{self.answered} requests answered{errors}, {self.cut} cut"


@dataclass
class RateLimitedLog:
    """At most ``burst`` lines per key and window; the lines left out are counted and said."""

    burst: int = LOG_BURST
    window_s: float = LOG_WINDOW_S
    clock: Callable[[], float] = time.monotonic
    emit: Callable[[str], None] = LOG.error
    _windows: dict[str, tuple[float, int]] = field(default_factory=dict)

    def __call__(self, key: str, line: str) -> bool:
        """Log ``line`` unless ``key`` has had its burst this window; True when logged."""
        now = self.clock()
        start, count = self._windows.get(key, (now, 0))
        if now - start >= self.window_s:
            if count > self.burst:
                self.emit(f"{key}: {count - self.burst} more like it in {now - start:.0f} s")
            start, count = now, 0
        self._windows[key] = (start, count + 1)
        if count < self.burst:
            self.emit(line)
            return True
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class guard:
    """``app`` wrapped so that HTTP requests are counted and never raise out of it; the
    wrapped app's ``state`` stays reachable as this one's."""

    def __init__(self, app: ASGIApp, tally: RequestTally, log: RateLimitedLog) -> None:
        self.app, self.tally, self.log = app, tally, log
        self.state = getattr(app, "state", None)
        self.running: set[asyncio.Task[Any]] = set()
        self.cutting = False

    def cut_in_flight(self) -> int:
        """Stop every request still running; each is answered 503 (the number cut)."""
        self.cutting = True
        for task in self.running:
            task.cancel(CUT)
        return len(self.running)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        task = asyncio.current_task()
        assert task is not None  # an ASGI app runs in a task
        self.running.add(task)
        self.tally.in_flight += 1
        try:
            await self.app(scope, receive, tracked)
            self.tally.answered += 1
        except asyncio.CancelledError:
            self.tally.cut += 1
            if not self._ours(task):
                raise
            if not started:
                await _answer(tracked, 503, CUT_ANSWER, close=True)
        except Exception as exc:
            self.tally.errors += 1
            where = f"{scope.get('method')} {scope.get('path')}"
            self.log(type(exc).__name__, f"internal error on {where}: {_first_line(exc)}")
            if not started:
                await _answer(tracked, 500, f"internal error: {_first_line(exc)}")
        finally:
            self.running.discard(task)
            self.tally.in_flight -= 1

    def _ours(self, task: asyncio.Task[Any]) -> bool:
        """True when the cancel was :meth:`cut_in_flight`'s alone (then it is taken back)."""
        if not self.cutting or task.cancelling() != 1:
            return False
        task.uncancel()
        return True


CUT_ANSWER = "server shutting down: the request was cut at the graceful timeout; send it again"


async def _answer(send: Send, status: int, message: str, close: bool = False) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
