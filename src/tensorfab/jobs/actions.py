"""Who asks, and cancel/hold/release: one set of rules for the REST API and the dashboard.

A request's caller is the identity its token (header or dashboard cookie) stands for, or
the daemon's local user when the daemon runs without a tokens file. With tokens, only a
job's owner may act on it. Each action moves a job between the states :data:`ACTIONS`
names; cancelling a running job only marks it, and the agent stops it and ends it cancelled.
"""

from __future__ import annotations

from typing import Any

from tensorfab.jobs.agent import Agent
from tensorfab.jobs.submit import Caller

ACTIONS = {
    "cancel": (("queued", "held", "preempted"), "cancelled"),
    "hold": (("queued", "preempted"), "held"),
    "release": (("held",), "queued"),
}


def caller_of(request: Any, local_user: str) -> Caller:
    """Who sent ``request``: its token's identity, else (no tokens file) the local user."""
    identity = getattr(request.state, "identity", None)
    if identity is None:
        return Caller(local_user, ("default",))
    return Caller(identity.user, tuple(identity.teams))


def may_act(row: dict[str, Any], who: str, owners_only: bool) -> bool:
    """With tokens (``owners_only``) only a job's owner acts on it; else the user owns all."""
    return not owners_only or row["user"] == who


def apply_action(
    agent: Agent, job_id: int, action: str, who: str, owners_only: bool
) -> tuple[int, dict[str, Any]]:
    """Cancel, hold or release job ``job_id`` for ``who``: (HTTP status, answer)."""
    if action not in ACTIONS:
        return 404, {"error": f"action {action!r}: use cancel, hold or release"}
    row = agent.store.get(job_id)
    if row is None:
        return 404, {"error": f"job {job_id}: no such job"}
    if not may_act(row, who, owners_only):
        return 403, {"error": f"job {job_id}: belongs to {row['user']}, not {who}"}
    if action == "cancel" and row["state"] == "running":
        return 200, _cancel_running(agent, row, who)
    allowed, target = ACTIONS[action]
    if not agent.store.change_if(job_id, allowed, target, f"{action} by {who}"):
        return 409, {"error": f"job {job_id}: is {row['state']}; cannot {action} it"}
    agent.ended(target)
    agent.wake.set()
    return 200, {"id": job_id, "state": target}


def _cancel_running(agent: Agent, row: dict[str, Any], who: str) -> dict[str, Any]:
    """Mark a running job for stopping; the agent signals it and ends it cancelled."""
    if row["stop_reason"] != "cancel":
        agent.store.update(row["id"], stop_reason="cancel", stop_sent_at=None)
        agent.store.note(row["id"], "running", f"cancel requested by {who}")
    agent.wake.set()
    return {"id": row["id"], "state": "running", "stopping": True}
