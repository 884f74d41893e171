"""``tensorfab jobs up``: one scheduler daemon per node, its API and its agent loop.

:func:`run_daemon` opens the store (refusing a network filesystem, a second daemon, a
corrupt or locked database, each in one line), reads the node's inventory and the tokens
file, recovers the jobs a previous daemon left, binds the API (loopback unless a tokens file
authenticates callers), writes ``daemon.json`` (URL and pid) for the CLI to find it, and
runs the agent's loop on a thread beside uvicorn until SIGINT/SIGTERM. Running jobs are not
stopped when the daemon stops: their supervisors live on and the next daemon adopts them.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from tensorfab.errors import TensorfabError
from tensorfab.files import write_text_atomic
from tensorfab.jobs.agent import Agent, AgentConfig
from tensorfab.jobs.api import ApiOptions, create_app
from tensorfab.jobs.backend import Backend, LocalBackend
from tensorfab.jobs.client import DAEMON_FILE, default_state_dir
from tensorfab.jobs.inventory import Inventory, discover
from tensorfab.jobs.policy import PolicyConfig
from tensorfab.jobs.store import Store
from tensorfab.jobs.supervisor import SUPERVISOR, read_json, start_ticks

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class DaemonOptions:
    state_dir: Path = field(default_factory=default_state_dir)
    jobs_dir: Path | None = None  # job folders; STATE_DIR/jobs when None
    host: str = "127.0.0.1"
    port: int = 8321
    simulate_gpus: int | None = None
    cpu_slots: int | None = None
    tokens_file: Path | None = None
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    allow_test_jobs: bool = False
    tick_s: float = 0.2
    backend: str = "local"  # or "ray": attempts as Ray actors (jobs/ray_backend.py)
    ray_address: str | None = None  # for the Ray backend; RAY_ADDRESS when None
    announce: Callable[[str], None] | None = None


def _tokens(options: DaemonOptions) -> object | None:
    if options.tokens_file is None:
        if options.host not in LOOPBACK:
            raise TensorfabError(
                f"--host {options.host}: without --tokens the daemon is single-user and "
                "listens on loopback only"
            )
        return None
    from tensorfab.auth import load_tokens

    return load_tokens(options.tokens_file)


def _backend(options: DaemonOptions) -> tuple[Backend, Inventory, int | None]:
    """The backend the daemon runs attempts through, with the inventory it schedules."""
    if options.backend == "ray":
        from tensorfab.engine.raycluster import import_ray, resolve_address
        from tensorfab.jobs.ray_backend import create_ray_backend

        import_ray()  # without Ray: the line that says how to install it, first
        address = resolve_address(options.ray_address)
        return create_ray_backend(address, options.simulate_gpus, options.cpu_slots)
    return LocalBackend(), discover(options.simulate_gpus), options.cpu_slots


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise TensorfabError(f"{host}:{port}: cannot listen there ({exc.strerror})") from None
    sock.listen(128)
    return sock


def url_of(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class Daemon:
    """A started daemon: store, agent thread and API socket (for ``jobs up`` and tests)."""

    def __init__(self, options: DaemonOptions) -> None:
        self.options = options
        tokens = _tokens(options)
        self.store = Store(options.state_dir, jobs_dir=options.jobs_dir)
        try:
            backend, inventory, cpu_slots = _backend(options)
            config = AgentConfig(options.policy, cpu_slots, options.tick_s)
            self.agent = Agent(self.store, inventory, backend, config)
            self.agent.recover()
            self.sock = _bind(options.host, options.port)
        except BaseException:
            self.store.close()
            raise
        self.url = url_of(self.sock, options.host)
        api = ApiOptions(tokens, getpass.getuser(), options.allow_test_jobs)
        config = uvicorn.Config(
            create_app(self.agent, api), log_level="warning", access_log=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.loop = threading.Thread(target=self._agent_loop, name="jobs-agent", daemon=True)
        self.failure: TensorfabError | None = None
        self.backend = backend

    def _agent_loop(self) -> None:
        try:
            self.agent.run()
        except TensorfabError as exc:  # the database became locked or unreadable
            self.failure = exc
            self.server.should_exit = True
        except BaseException:
            self.server.should_exit = True  # a broken agent must not leave a deaf daemon up
            raise

    def _write_daemon_file(self) -> None:
        record = {"url": self.url, "pid": os.getpid(), "started_at": time.time()}
        write_text_atomic(self.options.state_dir / DAEMON_FILE, json.dumps(record))

    def serve(self) -> int | None:
        """Run until SIGINT/SIGTERM or :meth:`stop`; returns the signal that stopped it.

        uvicorn re-raises the signal it shut down on once it has restored the handlers it
        found; the handlers installed here record it instead, so the daemon closes its store
        and removes ``daemon.json`` before the process exits (with 128+N).
        """
        received: list[int] = []

        def record(signum: int, _frame: object) -> None:
            received.append(signum)
            self.server.should_exit = True  # also when it comes before uvicorn took over

        stops = (signal.SIGINT, signal.SIGTERM)
        previous = {s: signal.signal(s, record) for s in stops}
        try:
            self._serve()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return received[0] if received else None

    def _serve(self) -> None:
        self.loop.start()
        self._write_daemon_file()
        if self.options.announce:
            inv = self.agent.inventory
            kind = "simulated " if inv.simulated else ""
            self.options.announce(
                f"jobs daemon on {self.url}: {len(inv.gpus)} {kind}GPUs, "
                f"{len(self.agent.node.cores)} CPU slots, state in {self.options.state_dir}"
            )
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.close()
        if self.failure is not None:
            raise self.failure

    def stop(self) -> None:
        self.server.should_exit = True

    def close(self) -> None:
        self.agent.stopped.set()
        self.agent.wake.set()
        if self.loop.is_alive():
            self.loop.join(timeout=30)
        (self.options.state_dir / DAEMON_FILE).unlink(missing_ok=True)
        close = getattr(self.backend, "close", None)  # the Ray backend ends its idle runners
        if close is not None:
            close()
        self.sock.close()
        self.store.close()


def run_daemon(options: DaemonOptions) -> int | None:
    """``jobs up``: serve this node until SIGINT/SIGTERM; returns that signal."""
    return Daemon(options).serve()


class DaemonProcess:
    """``tensorfab jobs up`` as a child process: for tests and the load benchmark.

    Started with ``--port 0``; ``url`` is read from the ``daemon.json`` it writes. Every
    wait is bounded. :meth:`close` stops the daemon and then every job process it left, so
    a test leaves nothing running.
    """

    def __init__(self, state_dir: Path, args: list[str], cwd: Path | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.args = args
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout_s: float = 120.0) -> DaemonProcess:
        command = [sys.executable, "-m", "tensorfab.cli.main", "jobs", "up", "--port", "0"]
        command += ["--state-dir", str(self.state_dir), *self.args]
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / "daemon.log", "ab") as log:
            self.process = subprocess.Popen(command, cwd=self.cwd, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout_s
        while (read_json(self.state_dir / DAEMON_FILE) or {}).get("pid") != self.process.pid:
            if self.process.poll() is not None or time.monotonic() > deadline:
                log_text = (self.state_dir / "daemon.log").read_text(errors="replace")
                raise RuntimeError(f"jobs daemon did not start:\n{log_text[-2000:]}")
            time.sleep(0.05)
        self.url = (read_json(self.state_dir / DAEMON_FILE) or {})["url"]
        return self

    def kill(self) -> None:
        """``kill -9`` the daemon (its jobs live on)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()

    def close(self) -> None:
        self.stop()
        jobs = self.args[self.args.index("--jobs-dir") + 1] if "--jobs-dir" in self.args else None
        kill_leftover_jobs(self.state_dir, Path(jobs) if jobs else None)

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def kill_leftover_jobs(state_dir: Path, jobs_dir: Path | None = None) -> None:
    """SIGKILL every job process group and supervisor recorded under ``state_dir`` (or
    ``jobs_dir``, where the job folders are apart from it)."""
    folders = jobs_dir or state_dir / "jobs"
    # a Ray gang's other nodes have folders of their own inside the job's (node1, ...)
    records = [*folders.glob(f"*/{SUPERVISOR}"), *folders.glob(f"*/node*/{SUPERVISOR}")]
    for record in records:
        info = read_json(record) or {}
        for pid_key, ticks_key, group in (
            ("child_pid", "child_start_ticks", True),
            ("pid", "start_ticks", False),
        ):
            pid = info.get(pid_key)
            if pid and start_ticks(int(pid)) == info.get(ticks_key):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    (os.killpg if group else os.kill)(int(pid), signal.SIGKILL)
