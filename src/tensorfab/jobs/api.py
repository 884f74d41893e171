"""The daemon's REST API (FastAPI): what the CLI and other clients call; never the DB file.

The web dashboard (``dashboard.py``: ``/``, ``/ui/...``, ``/login``) is mounted on the same
app and applies the same rules (``actions.py``).

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
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from tensorfab.errors import TensorfabError
from tensorfab.files import write_text_atomic
from tensorfab.jobs.actions import apply_action, caller_of
from tensorfab.jobs.agent import Agent, job_dir
from tensorfab.jobs.dashboard import COOKIE, OPEN_PATHS, add_dashboard
from tensorfab.jobs.store import ENDED, MAX_ID
from tensorfab.jobs.submit import (
    Caller,
    build_job,
    check_run_dir_creatable,
    request_from_json,
)
from tensorfab.jobs.supervisor import STDERR, STDOUT
from tensorfab.jobs.views import job_view, node_view
from tensorfab.metrics.prometheus import CONTENT_TYPE

MAX_LOG_CHUNK = 1 << 20
# a file offset is a signed 64-bit number (seek() refuses more): larger is a bad request
Offset = Annotated[int, Query(ge=0, le=MAX_ID)]


@dataclass(frozen=True)
class ApiOptions:
    tokens: Any = None  # a tensorfab.auth TokenTable, or None: single user, loopback only
    local_user: str = "user"
    allow_test_jobs: bool = False


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class _Routes:
    """The route handlers, bound to one agent (its store) and the API's options."""

    def __init__(self, agent: Agent, options: ApiOptions) -> None:
        self.agent = agent
        self.store = agent.store
        self.options = options

    def caller(self, request: Request) -> Caller:
        return caller_of(request, self.options.local_user)

    def health(self) -> dict[str, Any]:
        return {"ok": True, "node": self.agent.node.name}

    async def submit(self, request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error("request: body is not JSON")
        except RecursionError:  # json's decoder recurses once per level: {"a": {"a": ...
            return _error("request: body is nested too deep")
        req = request_from_json(body)
        allow = self.options.allow_test_jobs
        job, spec = build_job(req, self.caller(request), self.agent.node, allow)
        self._check_after(job.after)
        if job.run_dir:
            self._check_run_dir(job.run_dir)
        job.spec = spec
        job_id = self.store.add(job, time.time())
        if spec is not None:
            write_text_atomic(job_dir(self.store, job_id) / "spec.yaml", spec)
        self.agent.wake.set()
        return JSONResponse({"id": job_id, "run_dir": job.run_dir}, status_code=201)

    def _check_after(self, after: list[int]) -> None:
        """Each job named by ``after`` must exist: an unknown one could only cancel the job
        later ("dependency 9999 is unknown"), so it is refused now."""
        known = self.store.states_of(after)
        unknown = [str(i) for i in after if i not in known]
        if unknown:
            raise TensorfabError(f"after: job {', '.join(unknown)}: no such job")

    def _check_run_dir(self, run_dir: str) -> None:
        """A train job needs a run directory of its own: one it can make, not another job's."""
        check_run_dir_creatable(run_dir)
        for row in self.store.jobs(("queued", "held", "running", "preempted")):
            if row["run_dir"] == run_dir:
                raise TensorfabError(
                    f"{run_dir}: job {row['id']} already writes this run directory"
                )

    def list_jobs(self, all: bool = False) -> list[dict[str, Any]]:
        now = time.time()
        states = None if all else ("queued", "held", "running", "preempted")
        return [job_view(r, now) for r in self.store.jobs(states)]

    def show(self, job_id: int) -> Any:
        row = self.store.get(job_id)
        if row is None:
            return _error(f"job {job_id}: no such job", 404)
        view = job_view(row, time.time())
        view["events"] = self.store.events(job_id)
        view["job_dir"] = str(job_dir(self.store, job_id))
        return view

    def logs(self, job_id: int, stream: str = "stdout", offset: Offset = 0) -> Any:
        row = self.store.get(job_id)
        if row is None:
            return _error(f"job {job_id}: no such job", 404)
        if stream not in ("stdout", "stderr"):
            return _error(f"stream {stream!r}: use stdout or stderr")
        path = job_dir(self.store, job_id) / (STDOUT if stream == "stdout" else STDERR)
        text, new_offset = _read_chunk(path, offset)
        return {"text": text, "offset": new_offset, "ended": row["state"] in ENDED}

    def act(self, job_id: int, action: str, request: Request) -> Any:
        who = self.caller(request).user
        owners_only = self.options.tokens is not None
        status, answer = apply_action(self.agent, job_id, action, who, owners_only)
        return answer if status == 200 else _error(answer["error"], status)

    def node(self) -> dict[str, Any]:
        return node_view(self.agent)

    def report(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Stored rows (closed waits and runs) of jobs that ended at/after ``since`` or live."""
        rows = self.store.jobs()
        keep = [r for r in rows if r["ended_at"] is None or r["ended_at"] >= since]
        return [{k: v for k, v in r.items() if k not in ("spec", "energy_start")} for r in keep]

    def metrics(self) -> Response:
        return Response(self.agent.metrics.render(), media_type=CONTENT_TYPE)


def create_app(agent: Agent, options: ApiOptions) -> FastAPI:
    """The API over ``agent``; with a token table every route but /health needs a token."""
    app = FastAPI(title="tensorfab jobs", docs_url=None, redoc_url=None)
    if options.tokens is not None:
        from tensorfab.auth import install_auth

        install_auth(app, options.tokens, ("/health", *OPEN_PATHS), cookie=COOKIE)
    routes = _Routes(agent, options)
    add_dashboard(app, agent, options.tokens, options.local_user)
    app.add_api_route("/health", routes.health, methods=["GET"])
    app.add_api_route("/jobs", routes.submit, methods=["POST"])
    app.add_api_route("/jobs", routes.list_jobs, methods=["GET"])
    app.add_api_route("/jobs/{job_id}", routes.show, methods=["GET"])
    app.add_api_route("/jobs/{job_id}/logs", routes.logs, methods=["GET"])
    app.add_api_route("/jobs/{job_id}/{action}", routes.act, methods=["POST"])
    app.add_api_route("/node", routes.node, methods=["GET"])
    app.add_api_route("/report", routes.report, methods=["GET"])
    app.add_api_route("/metrics", routes.metrics, methods=["GET"])

    async def bad_input(_request: Request, exc: Exception) -> JSONResponse:
        return _error(str(exc))

    app.add_exception_handler(TensorfabError, bad_input)
    app.add_exception_handler(RequestValidationError, bad_parameter)
    return app


async def bad_parameter(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 ``{"detail": [...]}`` for a path or query value of the wrong type, as
    the documented 400 ``{"error": "request: query offset: ..."}`` naming the parameter."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    if not errors:
        return _error("request: invalid")
    first = errors[0]
    where = " ".join(str(part) for part in first.get("loc", ())) or "request"
    return _error(f"request: {where}: {first.get('msg', 'invalid')}")


def _read_chunk(path: Path, offset: int) -> tuple[str, int]:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, offset))
            data = f.read(MAX_LOG_CHUNK)
    except FileNotFoundError:
        return "", offset
    return data.decode("utf-8", errors="replace"), max(0, offset) + len(data)
