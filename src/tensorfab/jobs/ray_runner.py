"""The Ray actor that runs attempts of jobs, one at a time: ``JobRunner``.

A module of its own that imports only the standard library and the local backend (no
torch, no hardware probing): what a runner's worker process imports is paid each time the
backend starts one (importing torch there cost 4.7 s on a busy 2-core machine).

A runner holds one resource shape (its ``num_gpus``/``num_cpus``, or one bundle of a
gang's placement group) for its life and runs attempts in it, one after another: the
backend keeps idle runners of a shape warm and hands them the next job of that shape, so a
job does not pay for a new Ray worker process. A runner left idle for ``IDLE_EXIT_S``
(its daemon is gone) ends itself, which gives its resources back to Ray.

Before it runs anything, a runner checks that it sees the job folder the daemon prepared
(``ray.json`` with the attempt's token): on a node without the shared filesystem the
attempt fails at once with a line saying so, instead of running where nobody reads it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tensorfab.jobs.backend import Ended, Handle, Launch, LocalBackend

IDLE_EXIT_S = 600.0  # much longer than the backend keeps an idle runner (it kills them first)
RAY_FILE = "ray.json"  # written by the daemon in the job folder: token and runner names


def folder_problem(record: dict[str, Any], node: str) -> str | None:
    """Why this node cannot run the attempt (it does not see the daemon's job folder), or None."""
    folder = Path(record["job_dir"])
    probe = Path(record.get("ray_file") or folder / RAY_FILE)
    try:
        token = json.loads(probe.read_text()).get("token")
    except (OSError, ValueError):
        token = None
    if token == record["token"]:
        return None
    return (
        f"Ray node {node} does not see the job folder {folder}: the jobs folder "
        "(jobs up --jobs-dir) must be a path every Ray node sees (a shared filesystem)"
    )


def gang_argv(argv: list[str], gang: dict[str, Any]) -> list[str]:
    """A torchrun command of one node of a gang: ``--standalone`` becomes ``--nnodes K
    --node-rank i`` with the c10d rendezvous at the first bundle's node, and each node starts
    its share of the processes. Commands that are not torchrun's are left as they are."""
    if "--standalone" not in argv:
        return argv
    nodes = int(gang["nodes"])
    rendezvous = [
        f"--nnodes={nodes}",
        f"--node-rank={gang['rank']}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={gang['endpoint']}",
        f"--rdzv-id={gang['id']}",
        f"--local-addr={gang['address']}",
    ]
    out: list[str] = []
    for arg in argv:
        if arg == "--standalone":
            out += rendezvous
        elif arg.startswith("--nproc_per_node="):
            out.append(f"--nproc_per_node={max(1, int(arg.split('=', 1)[1]) // nodes)}")
        else:
            out.append(arg)
    return out


def node_address() -> str:
    import ray

    return str(ray.util.get_node_ip_address())


def free_port(address: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


class JobRunner:
    """Runs attempts on the node Ray placed it, one at a time; holds its resources while it lives.

    A threaded actor: ``run`` blocks for an attempt's life while ``signal``, ``result`` and
    ``state`` are served beside it.
    """

    def __init__(self, shape: tuple[int, int] = (0, 1), idle_exit_s: float = IDLE_EXIT_S) -> None:
        self.local = LocalBackend()
        self.shape = tuple(shape)
        self.lock = threading.Lock()
        self.current: tuple[int, int] | None = None
        self.handle: Handle | None = None
        self.finished = threading.Condition(self.lock)
        self.outcomes: dict[tuple[int, int], dict[str, Any]] = {}
        self.idle_since = time.monotonic()
        self.idle_exit_s = idle_exit_s
        threading.Thread(target=self._exit_when_forgotten, daemon=True).start()

    def rendezvous(self) -> str:
        """``ADDRESS:PORT`` for a gang's c10d rendezvous, on this runner's node."""
        address = node_address()
        return f"{address}:{free_port(address)}"

    def run(
        self, record: dict[str, Any], gang: dict[str, Any] | None = None, endpoint: str = ""
    ) -> dict[str, Any]:
        """Run one attempt to its end; returns how it ended (``{}``: its supervisor died,
        ``{"error": ...}``: it could not start here). A gang's node also gets its rank and
        the rendezvous ``endpoint`` (resolved by Ray from the first node's runner)."""
        import ray

        key = (int(record["job_id"]), int(record["attempt"]))
        with self.lock:
            self.current, self.handle = key, None
        outcome: dict[str, Any] = {}
        try:
            node = node_address()
            problem = folder_problem(record, node)
            if problem:
                outcome = {"error": problem}
                return outcome
            gpus = [str(g) for g in ray.get_gpu_ids()]
            launch = self._launch(
                record, {**gang, "endpoint": endpoint} if gang else None, node, gpus
            )
            handle = self.local.start(launch)
            with self.lock:
                self.handle = handle
            handle.process.wait()
            ended = self.local.poll(handle)
            outcome = asdict(ended) if isinstance(ended, Ended) else {}
            return outcome
        finally:
            self._done(key, outcome)

    def _launch(
        self, record: dict[str, Any], gang: dict[str, Any] | None, node: str, gpus: list[str]
    ) -> Launch:
        env = {
            **record["env"],
            "CUDA_VISIBLE_DEVICES": ",".join(gpus),
            "TENSORFAB_RAY_NODE": node_id(),
            "TENSORFAB_RAY_NODE_ADDRESS": node,
        }
        argv = record["argv"]
        job_dir = Path(record["job_dir"])
        if gang is not None:
            gang = {**gang, "address": node}
            argv = gang_argv(argv, gang)
            env.update(TENSORFAB_NODE_RANK=str(gang["rank"]), TENSORFAB_NNODES=str(gang["nodes"]))
            env["TENSORFAB_RDZV_ENDPOINT"] = gang["endpoint"]
            if gang["rank"]:  # each node of a gang has a folder of its own for its supervisor
                job_dir = job_dir / f"node{gang['rank']}"
        fields = {k: record[k] for k in ("job_id", "attempt", "cwd", "gpus", "cpus")}
        return Launch(**fields, job_dir=job_dir, argv=argv, env=env, cores=[])

    def _done(self, key: tuple[int, int], outcome: dict[str, Any]) -> None:
        with self.lock:
            self.outcomes = {**dict(list(self.outcomes.items())[-7:]), key: outcome}
            self.current, self.handle = None, None
            self.idle_since = time.monotonic()
            self.finished.notify_all()

    def result(self, job_id: int, attempt: int) -> dict[str, Any]:
        """How that attempt ended; blocks while it runs (for a restarted daemon)."""
        key = (job_id, attempt)
        with self.lock:
            while self.current == key:
                self.finished.wait()
            return self.outcomes.get(key, {})

    def signal(self, job_id: int, attempt: int, signum: int) -> bool:
        with self.lock:
            handle = self.handle if self.current == (job_id, attempt) else None
        return handle is not None and self.local.signal(handle, signum)

    def state(self) -> dict[str, Any]:
        """Busy with which attempt (None: idle), and the shape this runner holds."""
        with self.lock:
            return {"current": self.current, "shape": list(self.shape)}

    def _exit_when_forgotten(self) -> None:
        while True:
            time.sleep(min(30.0, self.idle_exit_s / 2))
            with self.lock:
                idle = self.current is None and (
                    time.monotonic() - self.idle_since > self.idle_exit_s
                )
            if idle:
                os._exit(0)  # Ray sees the actor die (no restarts) and frees its resources


def node_id() -> str:
    import ray

    return str(ray.get_runtime_context().get_node_id())
