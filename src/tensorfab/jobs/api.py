"""The daemon's REST API (FastAPI): what the CLI and other clients call; never the DB file.

Routes: ``GET /health`` (open), ``POST /jobs`` (submit), ``GET /jobs`` (``?all=true`` adds
ended jobs), ``GET /jobs/{id}`` (with its events), ``GET /jobs/{id}/logs`` (a chunk from an
offset, for ``logs -f``), ``POST /jobs/{id}/cancel|hold|release``, ``GET /node`` (devices and
who runs where, for ``top``), ``GET /report`` (accounting rows) and ``GET /metrics``
(Prometheus). Bad requests answer ``{"error": ...}`` with 400, unknown jobs 404, someone
else's job 403; with a tokens file every route but ``/health`` needs a bearer token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from tensorfab.errors import TensorfabError
from tensorfab.files import write_text_atomic
from tensorfab.jobs.agent import Agent, job_dir
from tensorfab.jobs.store import ENDED, WAITING
from tensorfab.jobs.submit import Caller, build_job, request_from_json
from tensorfab.jobs.supervisor import STDERR, STDOUT

MAX_LOG_CHUNK = 1 << 20
ACTIONS = {
    "cancel": (("queued", "held", "preempted"), "cancelled"),
    "hold": (("queued", "preempted"), "held"),
    "release": (("held",), "queued"),
}


@dataclass(frozen=True)
class ApiOptions:
    tokens: Any = None  # a tensorfab.auth TokenTable, or None: single user, loopback only
    local_user: str = "user"
    allow_test_jobs: bool = False


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def job_view(row: dict[str, Any], now: float) -> dict[str, Any]:
    """A job as clients see it: the row without internals, with the live wait time."""
    view = {k: v for k, v in row.items() if k not in ("spec", "energy_start")}
    if row["state"] in WAITING:
        view["wait_s"] = row["wait_s"] + max(0.0, now - row["queued_at"])
    if row["state"] == "running" and row["started_at"]:
        view["run_s"] = row["run_s"] + max(0.0, now - row["started_at"])
    view["name"] = Path(row["run_dir"]).name if row["run_dir"] else " ".join(row["argv"])
    return view


def create_app(agent: Agent, options: ApiOptions) -> FastAPI:
    app = FastAPI(title="tensorfab jobs", docs_url=None, redoc_url=None)
    store = agent.store
    if options.tokens is not None:
        from tensorfab.auth import install_auth

        install_auth(app, options.tokens, open_paths=("/health",))

    def caller(request: Request) -> Caller:
        identity = getattr(request.state, "identity", None)
        if identity is None:
            return Caller(options.local_user, ("default",))
        return Caller(identity.user, tuple(identity.teams))

    def owned(request: Request, job_id: int) -> dict[str, Any] | JSONResponse:
        row = store.get(job_id)
        if row is None:
            return _error(f"job {job_id}: no such job", 404)
        who = caller(request)
        if options.tokens is not None and row["user"] != who.user:
            return _error(f"job {job_id}: belongs to {row['user']}, not {who.user}", 403)
        return row

    @app.exception_handler(TensorfabError)
    async def bad_input(_request: Request, exc: TensorfabError) -> JSONResponse:
        return _error(str(exc))

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "node": agent.node.name}

    @app.post("/jobs")
    async def submit(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error("request: body is not JSON")
        req = request_from_json(body)
        job, spec = build_job(req, caller(request), agent.node, options.allow_test_jobs)
        job.spec = spec
        job_id = store.add(job, time.time())
        if spec is not None:
            write_text_atomic(job_dir(store, job_id) / "spec.yaml", spec)
        agent.wake.set()
        return JSONResponse({"id": job_id, "run_dir": job.run_dir}, status_code=201)

    @app.get("/jobs")
    def list_jobs(all: bool = False) -> list[dict[str, Any]]:
        now = time.time()
        states = None if all else ("queued", "held", "running", "preempted")
        return [job_view(r, now) for r in store.jobs(states)]

    @app.get("/jobs/{job_id}")
    def show(job_id: int, request: Request) -> Any:
        row = store.get(job_id)
        if row is None:
            return _error(f"job {job_id}: no such job", 404)
        view = job_view(row, time.time())
        view["events"] = store.events(job_id)
        view["job_dir"] = str(job_dir(store, job_id))
        return view

    @app.get("/jobs/{job_id}/logs")
    def logs(job_id: int, stream: str = "stdout", offset: int = 0) -> Any:
        row = store.get(job_id)
        if row is None:
            return _error(f"job {job_id}: no such job", 404)
        if stream not in ("stdout", "stderr"):
            return _error(f"stream {stream!r}: use stdout or stderr")
        path = job_dir(store, job_id) / (STDOUT if stream == "stdout" else STDERR)
        text, new_offset = _read_chunk(path, offset)
        return {"text": text, "offset": new_offset, "ended": row["state"] in ENDED}

    @app.post("/jobs/{job_id}/{action}")
    def act(job_id: int, action: str, request: Request) -> Any:
        if action not in ACTIONS:
            return _error(f"action {action!r}: use cancel, hold or release", 404)
        row = owned(request, job_id)
        if isinstance(row, JSONResponse):
            return row
        who = caller(request).user
        if action == "cancel" and row["state"] == "running":
            if not row["stop_reason"] or row["stop_reason"] != "cancel":
                store.update(job_id, stop_reason="cancel", stop_sent_at=None)
                store.note(job_id, "running", f"cancel requested by {who}")
            agent.wake.set()
            return {"id": job_id, "state": "running", "stopping": True}
        allowed, target = ACTIONS[action]
        if not store.change_if(job_id, allowed, target, f"{action} by {who}"):
            return _error(f"job {job_id}: is {row['state']}; cannot {action} it", 409)
        agent.wake.set()
        return {"id": job_id, "state": target}

    @app.get("/node")
    def node() -> dict[str, Any]:
        return node_view(agent)

    @app.get("/report")
    def report(since_s: float = 7 * 86400) -> list[dict[str, Any]]:
        now = time.time()
        return [job_view(r, now) for r in store.jobs(since=now - since_s)]

    @app.get("/metrics")
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(metrics_text(agent), media_type="text/plain; version=0.0.4")

    return app


def _read_chunk(path: Path, offset: int) -> tuple[str, int]:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, offset))
            data = f.read(MAX_LOG_CHUNK)
    except FileNotFoundError:
        return "", offset
    return data.decode("utf-8", errors="replace"), max(0, offset) + len(data)


def node_view(agent: Agent) -> dict[str, Any]:
    """Devices, who runs on each, and readings where real GPUs report them (``jobs top``)."""
    running = agent.store.jobs(("running",))
    owner = {d: j for j in running for d in j["devices"]}
    devices = []
    for gpu in agent.inventory.gpus:
        job = owner.get(gpu.id)
        devices.append(
            {
                "id": gpu.id,
                "index": gpu.index,
                "name": gpu.name,
                "simulated": gpu.simulated,
                "job": job["id"] if job else None,
                "user": job["user"] if job else None,
                "team": job["team"] if job else None,
                "readings": None if gpu.simulated else _readings(gpu.index, gpu.id),
            }
        )
    used_slots = sum(len(j["cores"]) for j in running)
    return {
        "node": agent.node.name,
        "devices": devices,
        "cpu_slots": len(agent.node.cores),
        "cpu_slots_used": used_slots,
        "memory_bytes": agent.node.mem_bytes,
        "queued": len(agent.store.jobs(WAITING)),
        "running": len(running),
    }


def _readings(index: int, gpu_id: str) -> dict[str, Any] | None:
    from tensorfab.hardware import gpu_readings

    return gpu_readings(index, gpu_id.removeprefix("GPU-"))


def metrics_text(agent: Agent) -> str:
    """Queue depth, running jobs, allocated/idle GPUs and waits, in Prometheus' text format."""
    from tensorfab.jobs.metrics import render_metrics

    return render_metrics(agent.store, agent.inventory)
