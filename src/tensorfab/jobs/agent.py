"""The node agent: the loop that turns the policy's decisions into processes and back.

Each :meth:`Agent.tick` reaps ended attempts (recording outcome and accounting in one
transaction each), sends pending stop signals and escalates to SIGKILL after the grace
period, keeps fair-share usage decayed, asks :func:`tensorfab.jobs.policy.decide` what to do
and applies it: claim a job atomically, then start it through the :class:`Backend`.

:meth:`Agent.recover` runs once when a daemon starts on a state dir a previous daemon left
(cleanly or by ``kill -9``): each job the database says is running is adopted if its
supervisor still lives, read from its exit file if it ended meanwhile, and requeued (to
resume from its checkpoint) if nothing of it is left. A job is therefore never lost and
never runs twice.

The API thread only writes the store (submit, hold, release, cancel marks); every process
action happens here, on one thread.
"""

from __future__ import annotations

import math
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tensorfab.files import write_text_atomic
from tensorfab.hardware.threads import THREADS_ENV
from tensorfab.jobs.backend import GONE, Backend, Ended, Gone, Handle, Launch
from tensorfab.jobs.inventory import Inventory
from tensorfab.jobs.metrics import JobsMetrics
from tensorfab.jobs.policy import (
    Cancel,
    Job,
    Node,
    PolicyConfig,
    Preempt,
    Start,
    State,
    Stop,
    charge,
    decay_usage,
    decide,
)
from tensorfab.jobs.store import ENDED, WAITING, Store

LIVE = ("queued", "held", "running", "preempted")
PREEMPTED_BY_SIGNAL = "preempt"
TIME_LIMIT = "time limit"
CANCEL = "cancel"
SLEEP_CODE = "import sys, time; time.sleep(float(sys.argv[1]))"


@dataclass(frozen=True)
class AgentConfig:
    policy: PolicyConfig
    cpu_slots: int | None = None  # cores offered; more than the node has oversubscribes
    tick_s: float = 0.2


def node_of(inventory: Inventory, cpu_slots: int | None) -> Node:
    """The policy's view of this node: GPU indices, core slots, memory."""
    slots = cpu_slots or len(inventory.cores)
    return Node(
        name=socket.gethostname(),
        gpus=tuple(g.index for g in inventory.gpus),
        cores=tuple(range(slots)),
        mem_bytes=inventory.memory_bytes,
        gpu_distance=inventory.distance or None,
    )


def job_dir(store: Store, job_id: int) -> Path:
    return store.jobs_dir / str(job_id)


class Agent:
    """Runs this node's jobs; one per daemon."""

    def __init__(
        self,
        store: Store,
        inventory: Inventory,
        backend: Backend,
        config: AgentConfig,
        clock: Callable[[], float] = time.time,
        policy: Callable[[State, float, PolicyConfig], list[Any]] = decide,
    ) -> None:
        self.store = store
        self.inventory = inventory
        self.backend = backend
        self.config = config
        self.clock = clock
        self.decide = policy
        self.node = node_of(inventory, config.cpu_slots)
        self.handles: dict[int, Handle] = {}
        self.usage: dict[str, float] = {}
        self.last_usage_at = clock()
        self.metrics = JobsMetrics()
        self.wake = threading.Event()
        self.stopped = threading.Event()

    # -- start-up -------------------------------------------------------------------------

    def recover(self) -> None:
        """Adopt, read or requeue the jobs a previous daemon left running."""
        now = self.clock()
        self.usage = self._usage_from_history(now)
        self._fail_corrupt(self.store.jobs())  # a row edited by hand while the daemon was down
        for job in self.store.jobs(("running",)):
            handle = self.backend.adopt(job["id"], job["attempt"], job_dir(self.store, job["id"]))
            if handle is None:
                self._finish(job, GONE)
            else:
                self.handles[job["id"]] = handle
                self.store.note(job["id"], "running", "adopted by a restarted daemon")

    def _usage_from_history(self, now: float) -> dict[str, float]:
        """Fair-share usage rebuilt from the database: each job's GPU-seconds, decayed."""
        half = self.config.policy.usage_half_life_s
        usage: dict[str, float] = {}
        for job in self.store.jobs():
            if job["gpu_s"]:
                age = max(0.0, now - (job["ended_at"] or now))
                usage = charge(usage, job["team"], job["gpu_s"] * 0.5 ** (age / half))
        return usage

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        """Tick until :attr:`stopped` is set; woken early by submits and changes."""
        while not self.stopped.is_set():
            self.tick()
            self.wake.wait(self.config.tick_s)
            self.wake.clear()

    def tick(self) -> None:
        self._reap()
        self._signal_stops()
        self._update_usage()
        self._schedule()
        self._update_metrics()

    def _update_metrics(self) -> None:
        live = self.store.jobs(LIVE)
        waiting: dict[str, int] = {}
        for job in live:
            if job["state"] in (*WAITING, "held"):
                waiting[job["state"]] = waiting.get(job["state"], 0) + 1
        running = [j for j in live if j["state"] == "running"]
        allocated = sum(len(j["devices"]) for j in running)
        idle = len(self.inventory.gpus) - allocated
        self.metrics.update(waiting, running=len(running), gpus_allocated=allocated, gpus_idle=idle)

    def ended(self, state: str) -> None:
        """Count a job that reached a final state (for /metrics)."""
        if state in ENDED:
            self.metrics.ended(state)

    def _reap(self) -> None:
        for job_id, handle in list(self.handles.items()):
            result = self.backend.poll(handle)
            if result is not None:
                job = self.store.get(job_id)
                if job is not None:
                    self._finish(job, result)
                self.handles.pop(job_id, None)

    def _signal_stops(self) -> None:
        """Send SIGTERM to jobs marked for stopping; SIGKILL those past the grace period."""
        now = self.clock()
        for job in self.store.jobs(("running",)):
            handle = self.handles.get(job["id"])
            if handle is None or not job["stop_reason"]:
                continue
            if job["stop_sent_at"] is None:
                if self.backend.signal(handle, signal.SIGTERM):
                    self.store.update(job["id"], stop_sent_at=now)
            elif now > job["stop_sent_at"] + self.config.policy.grace_s:
                self.backend.signal(handle, signal.SIGKILL)

    def _update_usage(self) -> None:
        now = self.clock()
        elapsed = max(0.0, now - self.last_usage_at)
        self.last_usage_at = now
        usage = decay_usage(self.usage, elapsed, self.config.policy.usage_half_life_s)
        for job in self.store.jobs(("running",)):
            if job["devices"]:
                usage = charge(usage, job["team"], len(job["devices"]) * elapsed)
        self.usage = usage

    # -- deciding ---------------------------------------------------------------------------

    def _fail_corrupt(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Fail each job whose row is corrupt (store._row names the row and field) and is
        not already ended, once, logging it; the sound rows are returned. The row stays in
        the database for a person to read; its job never runs on made-up values."""
        sound = []
        for row in rows:
            if "corrupt" not in row:
                sound.append(row)
            elif row["state"] not in ENDED or " state is " in row["corrupt"]:
                why = row["corrupt"]
                print(f"tensorfab jobs: job {row['id']} failed: {why}", file=sys.stderr, flush=True)
                self.store.transition(row["id"], "failed", why, self.clock())
                self.ended("failed")
        return sound

    def snapshot(self, now: float) -> State:
        live = self._fail_corrupt(self.store.jobs(LIVE))
        deps = sorted({d for j in live for d in j["after"]})
        finished = {i: s for i, s in self.store.states_of(deps).items() if s in ENDED}
        stopping = frozenset(j["id"] for j in live if j["state"] == "running" and j["stop_reason"])
        return State(
            nodes=(self.node,),
            jobs=tuple(self._policy_job(j) for j in live),
            finished=finished,
            usage=dict(self.usage),
            stopping=stopping,
        )

    def _policy_job(self, row: dict[str, Any]) -> Job:
        running = row["state"] == "running"
        limit = row["time_limit_s"]
        # a resumed job gets only what its limit has left, never a new budget
        left = math.inf if limit is None else max(0.0, limit - row["run_s"])
        return Job(
            id=row["id"],
            user=row["user"],
            team=row["team"],
            priority=row["priority"],
            gpus=row["gpus"],
            cpus=row["cpus"],
            mem_bytes=row["mem_bytes"],
            time_limit_s=left,
            submit_time=row["submitted_at"],
            state=row["state"],
            after=tuple(row["after"]),
            preemptible=row["kind"] == "train",
            start_time=row["started_at"] if running else None,
            node=self.node.name if running else None,
            devices=tuple(self._gpu_index(d) for d in row["devices"]) if running else (),
            cores=tuple(row["cores"]) if running else (),
            queued_since=None if running else row["queued_at"],
        )

    def _gpu_index(self, gpu_id: str) -> int:
        for gpu in self.inventory.gpus:
            if gpu.id == gpu_id:
                return gpu.index
        raise KeyError(f"GPU {gpu_id} is not on this node")

    def _schedule(self) -> None:
        now = self.clock()
        actions = self.decide(self.snapshot(now), now, self.config.policy)
        for action in actions:
            if isinstance(action, Start):
                self._start(action, now)
            elif isinstance(action, Preempt):
                self._mark_stop(action.job_id, PREEMPTED_BY_SIGNAL, action.reason)
            elif isinstance(action, Stop):
                self._mark_stop(action.job_id, TIME_LIMIT, action.reason)
            elif isinstance(action, Cancel) and self.store.change_if(
                action.job_id, ("queued", "held", "preempted"), "cancelled", action.reason
            ):
                self.ended("cancelled")
        if any(isinstance(a, (Preempt, Stop)) for a in actions):
            self._signal_stops()

    def _mark_stop(self, job_id: int, why: str, reason: str) -> None:
        job = self.store.get(job_id)
        if job and job["state"] == "running" and not job["stop_reason"]:
            self.store.update(job_id, stop_reason=why)
            self.store.note(job_id, "running", f"stopping (SIGTERM): {reason}")

    # -- starting ---------------------------------------------------------------------------

    def _start(self, action: Start, now: float) -> None:
        gpus = {g.index: g for g in self.inventory.gpus}
        devices = [gpus[i].id for i in action.devices]
        queued_at = (self.store.get(action.job_id) or {}).get("queued_at", now)
        if not self.store.claim(action.job_id, devices, list(action.cores), now):
            return  # cancelled or held meanwhile: nothing to start
        self.metrics.observe_wait(now - queued_at)
        job = self.store.get(action.job_id)
        assert job is not None
        self.store.update(job["id"], energy_start=self._energy(devices))
        try:
            self.handles[job["id"]] = self.backend.start(self._launch(job))
        except OSError as exc:
            self.store.transition(job["id"], "failed", f"could not start: {exc}", self.clock())
            self.ended("failed")

    def _launch(self, job: dict[str, Any]) -> Launch:
        folder = job_dir(self.store, job["id"])
        physical = self.inventory.cores
        cores = sorted({physical[slot % len(physical)] for slot in job["cores"]})
        simulated = self.inventory.simulated
        # torchrun starts one process per GPU: they share the job's cores
        processes = job["gpus"] if job["kind"] == "train" and job["gpus"] > 1 else 1
        threads = str(max(1, len(job["cores"]) // processes))
        env = {
            "CUDA_VISIBLE_DEVICES": "" if simulated else ",".join(job["devices"]),
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
            THREADS_ENV: threads,  # train.threads: auto takes the job's cores, not the load
            "PYTHONUNBUFFERED": "1",
            "TENSORFAB_JOB_ID": str(job["id"]),
            "TENSORFAB_JOB_DEVICES": ",".join(job["devices"]),
        }
        return Launch(
            job_id=job["id"],
            attempt=job["attempt"],
            job_dir=folder,
            argv=self._argv(job, folder),
            cwd=job["cwd"],
            env=env,
            cores=cores,
            gpus=job["gpus"],
            cpus=job["cpus"],
        )

    def _argv(self, job: dict[str, Any], folder: Path) -> list[str]:
        python = sys.executable
        if job["kind"] == "sleep":
            return [python, "-c", SLEEP_CODE, *job["argv"]]
        if job["kind"] == "command":
            return [python, "-m", "tensorfab.cli.main", *job["argv"]]
        return [*self._train_launcher(job), *self._train_args(job, folder)]

    def _train_launcher(self, job: dict[str, Any]) -> list[str]:
        python = sys.executable
        if job["gpus"] > 1:  # one process per GPU, DDP through torchrun
            return [
                python,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc_per_node={job['gpus']}",
                "-m",
                "tensorfab.cli.main",
            ]
        return [python, "-m", "tensorfab.cli.main"]

    def _train_args(self, job: dict[str, Any], folder: Path) -> list[str]:
        """``train SPEC``, with ``--resume`` once the run has a checkpoint to resume from."""
        spec = folder / "spec.yaml"
        if not spec.is_file():
            write_text_atomic(spec, job["spec"] or "")
        run_dir = Path(job["run_dir"])
        if (run_dir / "checkpoints" / "last.pt").is_file():
            return ["train", str(spec), "--resume", "--quiet"]
        if job["attempt"] > 1 and run_dir.is_dir():
            # an earlier attempt of this job made it and stopped before its first checkpoint
            shutil.rmtree(run_dir)
        return ["train", str(spec), "--quiet"]

    # -- ending -----------------------------------------------------------------------------

    def _finish(self, job: dict[str, Any], result: Ended | Gone) -> None:
        """Record how an attempt ended and what happens next, in one transaction."""
        now = self.clock()
        started = job["started_at"] or now
        ended = result.ended_at if isinstance(result, Ended) else now
        ran = max(0.0, ended - started)
        costs = self._costs(job, ran)
        state, reason, extra = self._outcome(job, result)
        self.store.transition(job["id"], state, reason, now, **costs, **extra)
        self.ended(state)
        self.wake.set()

    def _costs(self, job: dict[str, Any], ran: float) -> dict[str, Any]:
        energy = self._energy_used(job)
        total = None if energy is None else (job["energy_j"] or 0.0) + energy
        return {
            "run_s": job["run_s"] + ran,
            "gpu_s": job["gpu_s"] + ran * len(job["devices"]),
            "cpu_s": job["cpu_s"] + ran * len(job["cores"]),
            "energy_j": total if total is not None else job["energy_j"],
            "stop_reason": None,
            "stop_sent_at": None,
        }

    def _outcome(self, job: dict[str, Any], result: Ended | Gone) -> tuple[str, str, dict]:
        code = result.exit_code if isinstance(result, Ended) else None
        why = job["stop_reason"]
        if why == CANCEL:
            return "cancelled", "cancelled while running", {"exit_code": code}
        if code == 0:
            return "succeeded", "exit 0", {"exit_code": 0}
        if why == PREEMPTED_BY_SIGNAL:
            return (
                "preempted",
                f"preempted (exit {code}); back in the queue",
                {
                    "exit_code": code,
                    "preemptions": job["preemptions"] + 1,
                },
            )
        if why == TIME_LIMIT:
            return "failed", "time limit", {"exit_code": code}
        if code is None:
            return "queued", "its supervisor is gone (daemon or node went down); requeued", {}
        if job["retries_used"] < job["retries"]:
            used = job["retries_used"] + 1
            return (
                "queued",
                f"exit {code}; retry {used} of {job['retries']}",
                {
                    "exit_code": code,
                    "retries_used": used,
                },
            )
        return "failed", f"exit {code}", {"exit_code": code}

    # -- energy -----------------------------------------------------------------------------

    def _energy(self, devices: list[str]) -> dict[str, int] | None:
        """NVML energy counters (mJ) of the job's real GPUs at its start; None when simulated."""
        if self.inventory.simulated or not devices:
            return None
        from tensorfab.hardware import energy_mj

        readings = {}
        for gpu in self.inventory.gpus:
            if gpu.id in devices:
                value = energy_mj(gpu.index, gpu.id.removeprefix("GPU-"))
                if value is None:
                    return None
                readings[gpu.id] = value
        return readings

    def _energy_used(self, job: dict[str, Any]) -> float | None:
        start = job.get("energy_start")
        if not start:
            return None
        now = self._energy(list(start))
        if now is None:
            return None
        return sum(now[g] - start[g] for g in start) / 1000.0
