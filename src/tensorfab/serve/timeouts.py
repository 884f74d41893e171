"""uvicorn's HTTP/1.1 protocol with the one timeout it lacks: for the request's headers.

uvicorn (0.3x to 0.54) arms a timer only after a response, for the keep-alive wait, and
cancels it at the first byte received; a socket that connects and sends nothing, or sends
half a request line, is kept open without end (measured: README, "Serve"). Here a timer runs
from the connection (and from each byte that does not finish the headers) and closes the
socket when the headers are not all in within ``header_timeout_s``. Slow bodies are the
app's: :func:`tensorfab.serve.app.read_body` answers 408 and closes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

DEFAULT_HEADER_TIMEOUT_S = 10.0


class TimedH11Protocol(H11Protocol):
    """H11Protocol closing sockets whose request headers do not arrive in time."""

    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    closed_slow: int = 0  # sockets closed for slow headers, all connections together

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._waiting_for_headers():
            if self._header_timer is None:
                self._arm()
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        self._disarm()  # the keep-alive timer takes over until the next byte
        super().on_response_complete()

    def _waiting_for_headers(self) -> bool:
        idle = self.cycle is None or self.cycle.response_complete
        return idle and self.conn.their_state is h11.IDLE

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expired(self) -> None:
        self._header_timer = None
        if self._waiting_for_headers() and not self.transport.is_closing():
            TimedH11Protocol.closed_slow += 1
            self.transport.close()


def timed_protocol(header_timeout_s: float) -> type[TimedH11Protocol]:
    """The protocol class uvicorn is given (``http=``), with this server's header timeout."""
    return type("TimedH11Protocol", (TimedH11Protocol,), {"header_timeout_s": header_timeout_s})
