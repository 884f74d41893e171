"""The access log (``tensorfab serve --access-log``): one line per request, off by default.

A line says who asked, what (an HTTP method and path, or a gRPC method), the answer's status
(the HTTP status, or the gRPC status code's name) and the time from arrival to answer::

    127.0.0.1:52114 GET /v2/health/ready 200 0.4 ms
    127.0.0.1:52120 grpc ModelInfer OK 3.1 ms

It is off by default because a line per request costs time under load, and the issue's load
tests run without it. Query strings are left out (they may carry what a client did not mean
to log).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tensorfab.serve.guard import ASGIApp, Message, Receive, Scope, Send


def access_line(client: str, what: str, status: int | str, seconds: float) -> str:
    """One line of the access log."""
    return f"{client} {what} {status} {seconds * 1e3:.1f} ms"


def _client(scope: Scope) -> str:
    peer = scope.get("client")
    return f"{peer[0]}:{peer[1]}" if peer else "-"


class access_logged:
    """``app`` with one access-log line per HTTP request, given to ``emit`` once answered
    (or, with status 0, when the request ended without an answer: a client gone, a shutdown).
    The wrapped app's ``state`` stays reachable as this one's."""

    def __init__(self, app: ASGIApp, emit: Callable[[str], None]) -> None:
        self.app, self.emit = app, emit
        self.state: Any = getattr(app, "state", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 0

        async def tracked(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        finally:
            what = f"{scope.get('method')} {scope.get('path')}"
            self.emit(access_line(_client(scope), what, status, time.perf_counter() - start))
