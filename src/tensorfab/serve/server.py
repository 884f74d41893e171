"""Run the app under uvicorn: bind, serve, and shut down gracefully.

On SIGINT/SIGTERM uvicorn stops accepting connections and waits for requests in flight;
those still running ``graceful_timeout_s`` later are cut by the guard (each answered 503 with
``Connection: close``; uvicorn's own cancel, a 500, is only a last resort
``CUT_MARGIN_S`` after that). The app's shutdown then stops the gRPC endpoint (its calls in
flight get the same grace) and lets every batcher finish its queue before the process exits.
"""

from __future__ import annotations

import asyncio
import math
import resource
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn

from tensorfab.errors import TensorfabError
from tensorfab.package.repository import repository_models
from tensorfab.serve.access import access_logged
from tensorfab.serve.app import ServerOptions, create_app
from tensorfab.serve.guard import RateLimitedLog, guard
from tensorfab.serve.timeouts import DEFAULT_HEADER_TIMEOUT_S, timed_protocol

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
MAX_PORT = 65535
CUT_MARGIN_S = 5  # uvicorn cancels what is left (a 500) this long after the guard's cut


@dataclass(frozen=True)
class Bind:
    host: str = "127.0.0.1"  # loopback unless told otherwise
    port: int = 8000
    graceful_timeout_s: float = 30.0
    log_level: str = "warning"
    # Idle keep-alive connections stay open this long. uvicorn's default (5 s) equals httpx's
    # and other clients' pool expiry: a client may then reuse a connection in the instant
    # the server closes it, and that request fails with a read error, not an HTTP answer.
    # The server must keep connections longer than any client pool keeps them.
    keep_alive_s: int = 75
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S  # a request's headers must come in this


def raise_open_file_limit() -> tuple[int, int]:
    """Raise this process's soft open-file limit to the hard one; (before, after).

    Each idle client holds a socket; at the usual soft limit of 1,024 a crowd of idle
    sockets leaves no descriptor for the next valid client (the issue measured 1,100).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft, soft
        return soft, target
    return soft, soft


class DrainingServer(uvicorn.Server):
    """uvicorn's server, cutting the requests still in flight at the graceful timeout."""

    def __init__(self, config: uvicorn.Config, guarded: guard, grace_s: float) -> None:
        super().__init__(config)
        self.guarded, self.grace_s = guarded, grace_s

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        cut = asyncio.get_running_loop().call_later(self.grace_s, self.guarded.cut_in_flight)
        try:
            await super().shutdown(sockets)
        finally:
            cut.cancel()


def build_server(options: ServerOptions, bind: Bind) -> uvicorn.Server:
    guarded = guard(create_app(options), options.tally, RateLimitedLog())
    app: Any = guarded
    if options.access_log is not None:
        app = access_logged(app, options.access_log)
    config = uvicorn.Config(
        app,
        http=timed_protocol(bind.header_timeout_s),
        host=bind.host,
        port=bind.port,
        log_level=bind.log_level,
        timeout_graceful_shutdown=math.ceil(bind.graceful_timeout_s) + CUT_MARGIN_S,
        timeout_keep_alive=bind.keep_alive_s,
        access_log=False,
        lifespan="on",
    )
    return DrainingServer(config, guarded, bind.graceful_timeout_s)


def check_port(port: int, flag: str = "--port") -> None:
    """Refuse a port outside 0..65535 with a message, not the socket's OverflowError."""
    if not 0 <= port <= MAX_PORT:
        raise TensorfabError(f"{flag} {port}: choose a port from 0 to {MAX_PORT}")


def check_models(options: ServerOptions) -> None:
    """Fail before anything starts when a model named to load is not in the repository.

    Found only in the app's startup, the mistake would surface as uvicorn's traceback
    after the "serving ..." line; here it is one error that lists the models there are.
    """
    if not options.models:
        return
    present = repository_models(options.repository)
    for name in options.models:
        if name not in present:
            listed = ", ".join(present) or "none"
            raise TensorfabError(
                f"model {name!r}: not in the repository {options.repository} (models: {listed})"
            )


def check_bindable(bind: Bind, flag: str = "--port") -> None:
    """Fail at once, before any model loads, when the address cannot be bound."""
    check_port(bind.port, flag)
    family = socket.AF_INET6 if ":" in bind.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((bind.host, bind.port))
        except OSError as exc:
            raise TensorfabError(
                f"{bind.host}:{bind.port}: cannot listen there ({exc.strerror})"
            ) from None


def run_server(options: ServerOptions, bind: Bind) -> int | None:
    """Serve until SIGINT/SIGTERM (blocking); returns the signal that stopped it.

    uvicorn re-raises the signal it shut down on once it has restored the handlers it
    found; the handlers installed here record it, so the caller can exit with 128+N.
    """
    check_models(options)
    check_bindable(bind)
    if options.grpc is not None:
        check_bindable(Bind(options.grpc.host, options.grpc.port), "--grpc-port")
    before, after = raise_open_file_limit()
    if options.announce:
        auth = "bearer token required" if options.token else "no auth"
        url = f"http://{bind.host}:{bind.port}"
        options.announce(f"serving {options.repository} on {url} ({auth}); Ctrl-C stops")
        if after < 4096:
            options.announce(f"  open-file limit {after} (was {before}): few idle clients fit")
    received: list[int] = []
    previous = {s: signal.signal(s, lambda n, _: received.append(n)) for s in STOP_SIGNALS}
    try:
        server = build_server(options, bind)
        server.run()
    except SystemExit:  # uvicorn exits when it cannot start (it has logged why)
        raise TensorfabError(f"could not serve on {bind.host}:{bind.port}") from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        raise TensorfabError(f"could not serve on {bind.host}:{bind.port} (port in use?)")
    return received[0] if received else None


class BackgroundServer:
    """A real server on a real port in a thread: for tests and the load benchmark."""

    def __init__(self, options: ServerOptions, bind: Bind) -> None:
        self.server = build_server(options, bind)
        self.bind = bind
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.bind.host}:{self.bind.port}"

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise TensorfabError(f"server on {self.url} did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
