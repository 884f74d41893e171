"""The daemon's web dashboard: the page at ``/``, its live part, login, and the job buttons.

Same app, same auth as the REST API. A browser cannot send a bearer header, so with a
tokens file the page first asks for the token (``POST /login``, a form) and the daemon
answers with an HttpOnly, SameSite=Strict cookie that ``tensorfab.auth`` accepts in place
of the header; ``POST /logout`` clears it. Without a tokens file (single user, loopback)
there is no login. The buttons post forms to ``/ui/jobs/{id}/{action}``, which applies the
API's own rules (``actions.py``: only the owner acts, in the states the CLI allows)
and redirects back, so they work without JavaScript; posts must come from the daemon's own
pages. The job table is one page of the store (newest first, ``?page=N``), so the page
costs the same with a thousand jobs as with ten.
"""

from __future__ import annotations

import math
import time
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tensorfab.auth import same_origin
from tensorfab.jobs.accounting import summarize
from tensorfab.jobs.actions import ACTIONS, apply_action, caller_of, may_act
from tensorfab.jobs.agent import Agent
from tensorfab.jobs.client import usage_record
from tensorfab.jobs.dashboard_html import dashboard_page, live_part, login_page
from tensorfab.jobs.progress import run_progress
from tensorfab.jobs.views import job_view, node_view

COOKIE = "tensorfab_token"
PAGE_SIZE = 50
REFRESH_S = 2
USAGE_DAYS = 7
USAGE_TTL_S = 10.0  # the charts need not move every refresh; the sums cost O(jobs)
MAX_NOTE = 300  # a note comes back in the URL after a button; never a page of text
STATIC = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}
OPEN_PATHS = ("/", "/login", "/logout", *(f"/static/{name}" for name in STATIC))
# nothing from elsewhere: scripts, styles, images and form targets are the daemon's own
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status, headers=SECURITY_HEADERS)


def allowed_actions(job: dict[str, Any], may_act: bool) -> list[str]:
    """The buttons a job gets: the actions its state allows, if the caller may act on it."""
    if not may_act:
        return []
    out = [a for a, (states, _) in ACTIONS.items() if job["state"] in states]
    if job["state"] == "running" and job.get("stop_reason") != "cancel":
        out.insert(0, "cancel")  # a running job is stopped by its agent, then cancelled
    return out


class Dashboard:
    """The dashboard's routes over the daemon's agent (its store) and the API's rules."""

    def __init__(self, agent: Agent, tokens: Any, local_user: str) -> None:
        self.agent = agent
        self.store = agent.store
        self.tokens = tokens  # a tensorfab.auth TokenTable, or None: single user, no login
        self.login = tokens is not None
        self.local_user = local_user
        self._usage_cache: tuple[float, dict[str, list[dict[str, Any]]]] | None = None

    def _user(self, request: Request) -> str | None:
        """Who looks at the page; None when a tokens file needs a login first."""
        if self.login and getattr(request.state, "identity", None) is None:
            return None
        return caller_of(request, self.local_user).user

    def view(self, request: Request, page: int, now: float) -> dict[str, Any]:
        """Everything the page shows, gathered from the store, the runs and the node."""
        user = caller_of(request, self.local_user).user
        counts = self.store.counts()
        total = sum(counts.values())
        pages = max(1, math.ceil(total / PAGE_SIZE))
        page = min(max(1, page), pages)
        rows = self.store.page((page - 1) * PAGE_SIZE, PAGE_SIZE)
        jobs = [job_view(r, now) for r in rows]
        for job, row in zip(jobs, rows, strict=True):
            job["actions"] = allowed_actions(job, may_act(row, user, self.login))
        running = [job_view(r, now) for r in self.store.jobs(("running",))]
        for job in running:
            job["progress"] = run_progress(job["run_dir"])
        return {
            "node": self.agent.node.name,
            "user": user,
            "login": self.login,
            "refresh_s": REFRESH_S,
            "counts": counts,
            "jobs": jobs,
            "page": page,
            "pages": pages,
            "total": total,
            "running": running,
            "devices": node_view(self.agent)["devices"],
            "usage": self._usage(now),
            "usage_days": USAGE_DAYS,
        }

    def _usage(self, now: float) -> dict[str, list[dict[str, Any]]]:
        """GPU- and CPU-hours by team and user; computed at most every USAGE_TTL_S seconds."""
        if self._usage_cache and now - self._usage_cache[0] < USAGE_TTL_S:
            return self._usage_cache[1]
        since = now - USAGE_DAYS * 86400
        records = [usage_record(r) for r in self.store.usage_rows(since)]
        usage = {
            by: [r.__dict__ for r in summarize(records, since, by=by, now=now)]
            for by in ("team", "user")
        }
        self._usage_cache = (now, usage)
        return usage

    def page(self, request: Request, page: str = "1", note: str = "") -> HTMLResponse:
        if self._user(request) is None:
            return _html(login_page())
        number, problem = page_number(page)
        view = self.view(request, number, time.time())
        return _html(dashboard_page({**view, "note": (problem or note)[:MAX_NOTE]}))

    def live(self, request: Request, page: str = "1") -> HTMLResponse:
        return _html(live_part(self.view(request, page_number(page)[0], time.time())))

    async def log_in(self, request: Request) -> Response:
        if not self.login:
            return RedirectResponse("/", status_code=303)
        form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
        token = (form.get("token") or [""])[0]
        if self.tokens.identify(token) is None:
            return _html(login_page("wrong token"), status=401)
        answer = RedirectResponse("/", status_code=303)
        secure = request.url.scheme == "https"
        answer.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure)
        return answer

    def log_out(self) -> Response:
        answer = RedirectResponse("/", status_code=303)
        answer.delete_cookie(COOKIE, httponly=True, samesite="strict")
        return answer

    def act(self, job_id: int, action: str, request: Request, page: int = 1) -> Response:
        """A button: the API's action for the caller, then back to the page with a note."""
        if not same_origin(request):
            return _html("refused: the form did not come from this dashboard", status=403)
        who = caller_of(request, self.local_user).user
        status, answer = apply_action(self.agent, job_id, action, who, self.login)
        if status == 200:
            note = f"job {job_id}: {action} done" + (
                " (stopping)" if answer.get("stopping") else ""
            )
        else:
            note = answer["error"]
        return RedirectResponse(f"/?{urlencode({'page': page, 'note': note})}", status_code=303)

    def static(self, name: str) -> Response:
        if name not in STATIC:
            return Response("not found", status_code=404, media_type="text/plain")
        data = resources.files("tensorfab.jobs").joinpath("web", name).read_bytes()
        return Response(data, media_type=STATIC[name], headers={"Cache-Control": "no-cache"})


def add_dashboard(app: FastAPI, agent: Agent, tokens: Any, local_user: str) -> None:
    """Mount the dashboard's routes on the daemon's app (``tokens``: None, or a TokenTable)."""
    board = Dashboard(agent, tokens, local_user)
    app.add_api_route("/", board.page, methods=["GET"], response_class=HTMLResponse)
    app.add_api_route("/ui/live", board.live, methods=["GET"], response_class=HTMLResponse)
    app.add_api_route("/login", board.log_in, methods=["POST"])
    app.add_api_route("/logout", board.log_out, methods=["POST"])
    app.add_api_route("/ui/jobs/{job_id}/{action}", board.act, methods=["POST"])
    app.add_api_route("/static/{name}", board.static, methods=["GET"])


def page_number(text: str) -> tuple[int, str]:
    """``?page=`` as typed in a browser: a number, else page 1 with a note saying why (a page,
    not FastAPI's JSON 422, answers a person who edited the address)."""
    try:
        return int(text), ""
    except ValueError:
        return 1, f"?page={text[:40]} is not a page number: showing page 1"
