"""uvicorn's HTTP/1.1 protocol (httptools, the C parser) with the limits it lacks: a timeout
and a size for the request's headers.

uvicorn (0.3x to 0.54) arms a timer only after a response, for the keep-alive wait, and
cancels it at the first byte received; a socket that connects and sends nothing, or sends
half a request line, is kept open without end (measured: README, "Serve"). Here a timer runs
from the connection (and from the first byte after an answer) and closes the socket when the
headers are not all in within ``header_timeout_s``; headers longer than
``MAX_HEADER_BYTES`` (request line to blank line, exactly) are refused (400, closing) rather
than collected, which httptools alone
would do without bound. A request httptools cannot parse (two ``Content-Length`` headers, a bad
chunk size) is answered as every other error, ``400 {"error": ...}`` naming what the parser
said, not uvicorn's plain text. Slow bodies are the app's: :func:`tensorfab.serve.app.read_body`
answers 408 and closes.

httptools, not h11: the pure-Python h11 parser and uvicorn's code around it took about a
third of a one-core server's time under load (py-spy, README "Serving, where the time goes").
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

DEFAULT_HEADER_TIMEOUT_S = 10.0
MAX_HEADER_BYTES = 64 * 1024  # a request line and headers together (h11's default: 16 KiB)
TOO_LARGE = f"request headers: over {MAX_HEADER_BYTES} bytes (request line to blank line)"
LINGER_S = 1.0  # a refused socket drops what still comes this long, then closes


class TimedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol closing sockets whose request headers do not arrive in time, or
    do not end within ``MAX_HEADER_BYTES``."""

    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    closed_slow: int = 0  # sockets closed for slow headers, all connections together

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0  # received since the last request's headers ended
        self._in_body = False  # a request's headers are in, its body is not all in yet
        self._lingering = False  # headers refused: reading and dropping until closed
        self._tail = b""  # the last 3 header bytes received, to find a "\r\n\r\n" across reads

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # refused: what the client still sends is read and dropped
        if self._waiting_for_headers():
            if self._header_end(data) > MAX_HEADER_BYTES:
                self._refuse_headers()
                return
            self._header_bytes += len(data)
            self._tail = (self._tail + data)[-3:]
        super().data_received(data)
        if self.transport.is_closing() or not self._waiting_for_headers():
            self._disarm()
        elif self._header_timer is None:
            self._arm()

    def _header_end(self, data: bytes) -> int:
        """The headers' length with ``data`` received: up to their blank line when it is in
        ``data`` (the body after it does not count), else every byte so far. Only searched
        once the bytes pass the limit, so the limit is exact and costs nothing below it."""
        received = self._header_bytes + len(data)
        if received <= MAX_HEADER_BYTES:
            return received
        end = (self._tail + data).find(b"\r\n\r\n")
        return received if end < 0 else self._header_bytes - len(self._tail) + end + 4

    def _refuse_headers(self) -> None:
        """Answer 400 and close gracefully: the answer, then FIN; bytes the client still
        sends are read and dropped for ``LINGER_S`` before the socket closes. Closing with
        bytes unread makes the kernel send RST, which can destroy the answer before the
        client reads it (a "lingering close", as Apache and nginx do)."""
        self._disarm()
        self._lingering = True
        self._write_400(TOO_LARGE)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request its parser refused, as JSON: called inside its
        ``except HttpParserError``, so the parser's own words are at hand."""
        error = sys.exc_info()[1]
        said = str(error) if error is not None and str(error) else msg
        self._write_400(f"request: not valid HTTP/1.1: {said}")
        self.transport.close()

    def _write_400(self, message: str) -> None:
        """``400 {"error": message}`` with ``Connection: close``, as the app's errors read."""
        body = json.dumps({"error": message}).encode()
        headers = b"".join(n + b": " + v + b"\r\n" for n, v in self.server_state.default_headers)
        self.transport.write(
            STATUS_LINE[400] + headers + b"content-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
        )

    def on_headers_complete(self) -> None:
        self._header_bytes, self._in_body, self._tail = 0, True, b""
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        self._disarm()  # the keep-alive timer takes over until the next byte
        super().on_response_complete()

    def _waiting_for_headers(self) -> bool:
        idle = self.cycle is None or self.cycle.response_complete
        return idle and not self._in_body

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
            TimedHttpToolsProtocol.closed_slow += 1
            self.transport.close()


def timed_protocol(header_timeout_s: float) -> type[TimedHttpToolsProtocol]:
    """The protocol class uvicorn is given (``http=``), with this server's header timeout."""
    attrs = {"header_timeout_s": header_timeout_s}
    return type("TimedHttpToolsProtocol", (TimedHttpToolsProtocol,), attrs)
