"""What clients see of a job and of the node: the API's and the dashboard's one view of each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tensorfab.jobs.agent import Agent
from tensorfab.jobs.store import WAITING


def job_view(row: dict[str, Any], now: float) -> dict[str, Any]:
    """A job as clients see it: the row without internals, with the live wait time."""
    view = {k: v for k, v in row.items() if k not in ("spec", "energy_start")}
    if row["state"] in WAITING:
        view["wait_s"] = row["wait_s"] + max(0.0, now - row["queued_at"])
    if row["state"] == "running" and row["started_at"]:
        view["run_s"] = row["run_s"] + max(0.0, now - row["started_at"])
    view["name"] = Path(row["run_dir"]).name if row["run_dir"] else " ".join(row["argv"])
    return view


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
                "memory_bytes": gpu.memory_bytes,
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
