"""The daemon's HTTP client (httpx): how the CLI and scripts talk to ``tensorfab jobs up``.

The daemon is found from ``--url``, else ``TENSORFAB_JOBS_URL``, else the ``daemon.json``
the daemon writes in its state dir; the token comes from ``TENSORFAB_TOKEN``. A daemon that
does not answer is one line saying how to start it; an error answer is its message.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx

from tensorfab.auth import token_from_env
from tensorfab.errors import TensorfabError
from tensorfab.jobs.accounting import JobUsage

DAEMON_FILE = "daemon.json"
START_HINT = "start it with: tensorfab jobs up"


def default_state_dir() -> Path:
    return Path.home() / ".tensorfab" / "jobs"


def find_url(url: str | None = None, state_dir: Path | None = None) -> str:
    """Where the daemon listens: ``url``, ``TENSORFAB_JOBS_URL`` or its ``daemon.json``."""
    found = url or os.environ.get("TENSORFAB_JOBS_URL")
    if found:
        return found.rstrip("/")
    path = (state_dir or default_state_dir()) / DAEMON_FILE
    try:
        return str(json.loads(path.read_text())["url"]).rstrip("/")
    except (OSError, ValueError, KeyError):
        raise TensorfabError(f"no jobs daemon found ({path} missing); {START_HINT}") from None


class JobsClient:
    """Calls to one daemon; every method returns the decoded JSON answer."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    @classmethod
    def connect(cls, url: str | None = None, state_dir: Path | None = None) -> JobsClient:
        return cls(find_url(url, state_dir), token_from_env("TENSORFAB_TOKEN"))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> JobsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            answer = self.http.request(method, path, **kw)
        except httpx.TransportError:
            raise TensorfabError(f"no jobs daemon answers at {self.url}; {START_HINT}") from None
        if answer.status_code >= 400:
            try:
                message = answer.json().get("error") or answer.text
            except ValueError:
                message = answer.text
            raise TensorfabError(message)
        return answer.json() if answer.content else None

    def submit(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/jobs", json=request)

    def jobs(self, all: bool = False) -> list[dict[str, Any]]:
        return self._call("GET", "/jobs", params={"all": str(all).lower()})

    def show(self, job_id: int) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}")

    def logs(self, job_id: int, stream: str = "stdout", offset: int = 0) -> dict[str, Any]:
        return self._call(
            "GET", f"/jobs/{job_id}/logs", params={"stream": stream, "offset": offset}
        )

    def act(self, job_id: int, action: str) -> dict[str, Any]:
        return self._call("POST", f"/jobs/{job_id}/{action}")

    def node(self) -> dict[str, Any]:
        return self._call("GET", "/node")

    def report(self, since: float) -> list[dict[str, Any]]:
        return self._call("GET", "/report", params={"since": since})

    def usage(self, since: float) -> list[JobUsage]:
        """Accounting records of the jobs that ended at/after ``since`` or have not ended."""
        return [usage_record(r) for r in self.report(since)]

    def metrics(self) -> str:
        try:
            return self.http.get("/metrics").text
        except httpx.TransportError:
            raise TensorfabError(f"no jobs daemon answers at {self.url}; {START_HINT}") from None


def usage_record(row: dict[str, Any]) -> JobUsage:
    """A daemon's report row (closed waits and runs) as accounting's :class:`JobUsage`."""
    return JobUsage(
        id=row["id"],
        user=row["user"],
        team=row["team"],
        state=row["state"],
        submit_time=row["submitted_at"],
        start_time=row["started_at"],
        end_time=row["ended_at"],
        gpus=row["gpus"],
        cpus=row["cpus"],
        wait_s=row["wait_s"],
        queued_time=row["queued_at"] if row["state"] in ("queued", "held", "preempted") else None,
        run_s=row["run_s"],
        energy_j=row["energy_j"],
        preemptions=row["preemptions"],
        retries=row["retries_used"],
    )
