"""The Ray backend: the daemon's queue and policy, Ray's placement and processes.

``tensorfab jobs up --backend ray --address ADDR`` keeps everything of the local daemon (the
store, priorities, fair share, preemption, accounting) and replaces only how an attempt
runs: on a Ray actor, ``JobRunner``, that holds the job's resources (``num_gpus``/
``num_cpus``) and runs the attempt exactly as the local backend does, under
``tensorfab.jobs.supervisor`` on its node, with ``CUDA_VISIBLE_DEVICES`` set to the GPUs Ray
assigned to it. So a preemption is still SIGTERM to the job's process group -> checkpoint ->
exit 143 -> requeue -> resume, and the job folder (``exit.json``, logs) is the same as a
local job's.

Runners are kept warm: when an attempt ends, its runner waits (``KEEP_IDLE_S``) for the
next job of the same shape (GPUs, CPUs) and runs it without a new Ray worker process; idle
runners of other shapes are ended when the resources they hold are wanted.

A job of more GPUs than a node has is a multi-node gang: a ``STRICT_SPREAD`` placement
group of one bundle per node (Ray places all bundles or none), one runner per bundle, and a
torchrun job runs ``torchrun --nnodes K --node-rank i`` with its c10d rendezvous on the
first bundle's node. Its runners end with the attempt.

The daemon's node is the cluster as Ray reports it (its GPU and CPU totals). The job
folders must be on storage every Ray node sees (``jobs up --jobs-dir``); a runner on a node
that does not see its job folder fails the attempt with a line saying so. Runners are
detached named actors in the ``tensorfab`` namespace and the job folder's ``ray.json``
names them, so a restarted daemon adopts the running attempts.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tensorfab.engine.raycluster import NAMESPACE, connect
from tensorfab.errors import TensorfabError
from tensorfab.files import write_text_atomic
from tensorfab.jobs.backend import Ended, Gone, Handle, Launch, LocalBackend
from tensorfab.jobs.inventory import Gpu, Inventory
from tensorfab.jobs.ray_runner import RAY_FILE, JobRunner
from tensorfab.jobs.supervisor import STDERR, read_json

SIGNAL_TIMEOUT_S = 10.0
KEEP_IDLE_S = 30.0  # an idle runner waits this long for a job of its shape, then ends
UNPLACED_S = 10.0  # a job Ray has not placed this long on a cluster of several nodes ends the
# idle runners: they may hold the GPUs of the node it needs (a new runner's start is slower)
RUNNER_PREFIX = "tensorfab-runner-"


def gang_name(job_id: int, attempt: int) -> str:
    return f"tensorfab-job-{job_id}-a{attempt}"


def gang_nodes(gpus: int, node_gpus: int) -> int:
    """How many nodes a job of ``gpus`` GPUs spans: 1 when one node holds it, else the
    fewest nodes that share the GPUs evenly (at worst one GPU on each of ``gpus`` nodes)."""
    if gpus <= node_gpus or node_gpus <= 0:
        return 1
    return next(n for n in range(2, gpus + 1) if gpus % n == 0 and gpus // n <= node_gpus)


@dataclass
class Runner:
    """One runner actor as the daemon knows it."""

    actor: Any
    name: str
    shape: tuple[int, int]  # (GPUs, CPUs) it holds
    idle_since: float = 0.0


@dataclass
class RayJob:
    """What the daemon holds of a started attempt: its runners and the results they will give."""

    runners: list[Runner]
    results: list[Any]  # ObjectRefs of JobRunner.run / JobRunner.result, one per runner
    ready: list[Any] = field(default_factory=list)  # resolve once Ray has placed the runners
    group: Any = None  # a multi-node gang's placement group
    started: float = field(default_factory=time.monotonic)


def ray_inventory(ray: Any, cpu_slots: int | None) -> tuple[Inventory, int]:
    """The cluster as one node for the policy: its GPUs (by index) and CPU slots."""
    total = ray.cluster_resources()
    gpus = [Gpu(f"ray{i}", i, "Ray GPU", 0, True) for i in range(int(total.get("GPU", 0)))]
    cpus = cpu_slots or max(1, int(total.get("CPU", 1)))
    return Inventory(gpus, list(range(cpus)), int(total.get("memory", 0))), cpus


def node_gpus(ray: Any) -> int:
    """The most GPUs one live node of the cluster has."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return max((int(n.get("Resources", {}).get("GPU", 0)) for n in nodes), default=0)


def combine(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    """One attempt's outcome from its runners' (a gang's nodes): the first failure's exit code
    (node 0 first), the earliest start and the latest end; ``{}`` when a supervisor died."""
    if not outcomes or any(not o for o in outcomes):
        return {}
    codes = [o["exit_code"] for o in outcomes]
    return {
        "exit_code": next((c for c in codes if c != 0), 0),
        "started_at": min(o["started_at"] for o in outcomes),
        "ended_at": max(o["ended_at"] for o in outcomes),
    }


class RunnerPool:
    """Idle runners by shape and what all of the daemon's runners hold."""

    def __init__(self, ray: Any, total: tuple[int, int]) -> None:
        self.ray = ray
        self.total = total
        self.idle: list[Runner] = []
        self.busy: dict[str, Runner] = {}

    def take(self, shape: tuple[int, int]) -> Runner | None:
        """An idle runner of this shape, now busy; None when there is none."""
        for runner in self.idle:
            if runner.shape == shape:
                self.idle.remove(runner)
                self.busy[runner.name] = runner
                return runner
        return None

    def make_room(self, shape: tuple[int, int]) -> None:
        """End idle runners of other shapes, oldest first, until ``shape`` fits beside the rest."""
        for runner in sorted(self.idle, key=lambda r: r.idle_since):
            if self._fits(shape):
                return
            self.end(runner)

    def _fits(self, shape: tuple[int, int]) -> bool:
        runners = [*self.idle, *self.busy.values()]
        held = [sum(r.shape[i] for r in runners) for i in (0, 1)]
        return all(held[i] + shape[i] <= self.total[i] for i in (0, 1))

    def release(self, runner: Runner, now: float) -> None:
        """A runner's attempt ended: it waits for the next job of its shape."""
        if self.busy.pop(runner.name, None) is not None:
            runner.idle_since = now
            self.idle.append(runner)

    def reap(self, now: float, keep_s: float = KEEP_IDLE_S) -> None:
        for runner in [r for r in self.idle if now - r.idle_since > keep_s]:
            self.end(runner)

    def end(self, runner: Runner) -> None:
        if runner in self.idle:
            self.idle.remove(runner)
        self.busy.pop(runner.name, None)
        with contextlib.suppress(Exception):  # already gone: nothing to end
            self.ray.kill(runner.actor, no_restart=True)


class RayBackend:
    """Attempts on Ray runner actors; see the module docstring."""

    def __init__(self, address: str, simulate_gpus: int | None = None) -> None:
        self.ray = connect(address, num_gpus=simulate_gpus)
        self.runner = self.ray.remote(JobRunner)
        self.local = LocalBackend()
        total = self.ray.cluster_resources()
        self.pool = RunnerPool(self.ray, (int(total.get("GPU", 0)), int(total.get("CPU", 1))))
        self.node_gpus = node_gpus(self.ray)
        self.nodes = len([n for n in self.ray.nodes() if n.get("Alive")])
        self._take_over_idle_runners()

    def start(self, launch: Launch) -> Handle:
        nodes = gang_nodes(launch.gpus, self.node_gpus)
        token = uuid.uuid4().hex
        record = {**asdict(launch), "job_dir": str(launch.job_dir), "token": token}
        if nodes > 1:
            job = self._start_gang(launch, record, nodes)
        else:
            job = self._start_one(launch, record)
        return Handle(launch.job_id, launch.attempt, launch.job_dir, job)

    def _start_one(self, launch: Launch, record: dict[str, Any]) -> RayJob:
        shape = (launch.gpus, launch.cpus)
        runner = self.pool.take(shape)
        if runner is None:
            self.pool.make_room(shape)
            name = f"{RUNNER_PREFIX}{uuid.uuid4().hex[:12]}"
            options = {"num_gpus": shape[0], "num_cpus": shape[1]}
            actor = self.runner.options(**self._actor_options(name, options)).remote(shape)
            runner = Runner(actor, name, shape)
            self.pool.busy[name] = runner
        self._write_ray_file(launch, record["token"], [runner.name])
        result = runner.actor.run.remote(record)
        return RayJob([runner], [result], [runner.actor.__ray_ready__.remote()])

    def _start_gang(self, launch: Launch, record: dict[str, Any], nodes: int) -> RayJob:
        """One bundle per node, all placed or none; one runner per bundle."""
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        name = gang_name(launch.job_id, launch.attempt)
        shape = (launch.gpus // nodes, max(1, -(-launch.cpus // nodes)))
        bundle = {"GPU": float(shape[0]), "CPU": float(shape[1])}
        self.pool.make_room((launch.gpus, shape[1] * nodes))
        group = placement_group(
            [bundle] * nodes, strategy="STRICT_SPREAD", name=name, lifetime="detached"
        )
        runners = []
        for rank in range(nodes):
            strategy = PlacementGroupSchedulingStrategy(group, rank)
            options = {"num_gpus": shape[0], "num_cpus": shape[1], "scheduling_strategy": strategy}
            actor = self.runner.options(**self._actor_options(f"{name}-n{rank}", options))
            runners.append(Runner(actor.remote(shape), f"{name}-n{rank}", shape))
        self._write_ray_file(launch, record["token"], [r.name for r in runners], name)
        endpoint = runners[0].actor.rendezvous.remote()
        results = [
            r.actor.run.remote(record, {"nodes": nodes, "rank": i, "id": name}, endpoint)
            for i, r in enumerate(runners)
        ]
        ready = [r.actor.__ray_ready__.remote() for r in runners]
        return RayJob(runners, results, ready, group)

    @staticmethod
    def _actor_options(name: str, resources: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": NAMESPACE,
            "lifetime": "detached",
            "max_concurrency": 4,
            "max_restarts": 0,
            **resources,
        }

    def _write_ray_file(
        self, launch: Launch, token: str, names: list[str], group: str | None = None
    ) -> None:
        """The job folder's ``ray.json``: the token a runner checks it sees, and the runners
        (and the gang's placement group) a restarted daemon adopts."""
        launch.job_dir.mkdir(parents=True, exist_ok=True)
        record = {"token": token, "attempt": launch.attempt, "runners": names, "group": group}
        write_text_atomic(launch.job_dir / RAY_FILE, json.dumps(record))

    def signal(self, handle: Handle, signum: int) -> bool:
        job: RayJob | None = handle.process
        if job is None:
            return self.local.signal(handle, signum)
        if not self._placed(job):
            # still waiting for Ray to place it (the cluster is busier than the policy knew):
            # nothing runs yet, so a stop is the end of its runners and reservation
            self._end(job)
            return True
        calls = [r.actor.signal.remote(handle.job_id, handle.attempt, signum) for r in job.runners]
        try:
            return any(self.ray.get(calls, timeout=SIGNAL_TIMEOUT_S))
        except self.ray.exceptions.GetTimeoutError:
            return False
        except self.ray.exceptions.RayActorError:
            return self.local.signal(Handle(handle.job_id, handle.attempt, handle.job_dir), signum)

    def _placed(self, job: RayJob) -> bool:
        if not job.ready:
            return True
        return len(self.ray.wait(job.ready, num_returns=len(job.ready), timeout=0)[0]) == len(
            job.ready
        )

    def poll(self, handle: Handle) -> Ended | Gone | None:
        now = time.time()
        self.pool.reap(now)
        job: RayJob | None = handle.process
        plain = Handle(handle.job_id, handle.attempt, handle.job_dir)
        if job is None:
            return self.local.poll(plain)
        done, _ = self.ray.wait(job.results, num_returns=len(job.results), timeout=0)
        if len(done) < len(job.results):
            self._unblock(job)
            return None
        outcomes = [self._outcome(ref) for ref in job.results]
        self._finish(job, outcomes, now)
        errors = [o["error"] for o in outcomes if "error" in o]
        if errors:
            return self._failed_to_start(plain, errors, now)
        outcome = combine(outcomes)
        if outcome:
            return Ended(**outcome)
        handle.process = None  # from now on read from the job folder, as the local backend does
        return self.local.poll(plain)

    def _unblock(self, job: RayJob) -> None:
        """Ray has not placed the job for long on a cluster of several nodes, where idle
        runners may hold the GPUs of the node it needs (the daemon counts the cluster's
        GPUs, not each node's): end them. On one node the pool's count is exact."""
        waited = time.monotonic() - job.started
        if self.pool.idle and self.nodes > 1 and waited > UNPLACED_S and not self._placed(job):
            for runner in list(self.pool.idle):
                self.pool.end(runner)

    def _outcome(self, ref: Any) -> dict[str, Any]:
        try:
            return dict(self.ray.get(ref))
        except self.ray.exceptions.RayError:
            return {}  # the runner died (killed, node lost): the job folder tells the rest

    def _finish(self, job: RayJob, outcomes: list[dict[str, Any]], now: float) -> None:
        """Gang runners end with the attempt; a single runner that lived waits for the next."""
        if job.group is None and outcomes[0]:
            self.pool.release(job.runners[0], now)
        else:
            self._end(job)

    def _failed_to_start(self, plain: Handle, errors: list[str], now: float) -> Ended:
        """A runner could not see the job folder: say so in the daemon's copy of the job's
        stderr log (``jobs logs ID --stderr``) and end the attempt with exit code 2."""
        log = plain.job_dir / STDERR
        before = log.read_text(errors="replace") if log.is_file() else ""
        write_text_atomic(log, before + "".join(f"error: {e}\n" for e in errors))
        return Ended(exit_code=2, started_at=now, ended_at=now)

    def _end(self, job: RayJob) -> None:
        for runner in job.runners:
            self.pool.end(runner)
        if job.group is not None:
            self.ray.util.remove_placement_group(job.group)
            job.group = None

    def adopt(self, job_id: int, attempt: int, job_dir: Path) -> Handle | None:
        """A restarted daemon takes over the attempt's runners by name, if they still live."""
        info = read_json(job_dir / RAY_FILE) or {}
        runners = self._runners(info.get("runners", [])) if info.get("attempt") == attempt else []
        if not runners:
            return self.local.adopt(job_id, attempt, job_dir)
        group = self.ray.util.get_placement_group(info["group"]) if info.get("group") else None
        for runner in runners if group is None else []:
            self.pool.busy[runner.name] = runner
        results = [r.actor.result.remote(job_id, attempt) for r in runners]
        return Handle(job_id, attempt, job_dir, RayJob(runners, results, [], group))

    def _runners(self, names: list[str]) -> list[Runner]:
        found = [self._runner(name) for name in names]
        return [f[0] for f in found if f] if all(found) else []

    def _runner(self, name: str) -> tuple[Runner, dict[str, Any]] | None:
        """The named runner and its state, or None when it is gone."""
        try:
            actor = self.ray.get_actor(name, namespace=NAMESPACE)
            state = self.ray.get(actor.state.remote(), timeout=SIGNAL_TIMEOUT_S)
        except (ValueError, self.ray.exceptions.RayError):
            return None
        return Runner(actor, name, (int(state["shape"][0]), int(state["shape"][1]))), state

    def _take_over_idle_runners(self) -> None:
        """Idle runners a previous daemon left join this one's pool (and end if unused)."""
        from ray.util import list_named_actors

        now = time.time()
        for name in list_named_actors():
            found = self._runner(name) if str(name).startswith(RUNNER_PREFIX) else None
            if found is not None and found[1]["current"] is None:
                found[0].idle_since = now
                self.pool.idle.append(found[0])

    def close(self) -> None:
        """End the idle runners (running attempts keep theirs: a new daemon adopts them)."""
        for runner in list(self.pool.idle):
            self.pool.end(runner)


def create_ray_backend(
    address: str, simulate_gpus: int | None, cpu_slots: int | None
) -> tuple[RayBackend, Inventory, int]:
    """The backend, the cluster's inventory and CPU slots for ``jobs up --backend ray``."""
    backend = RayBackend(address, simulate_gpus)
    inventory, cpus = ray_inventory(backend.ray, cpu_slots)
    if simulate_gpus is not None and address != "local" and len(inventory.gpus) != simulate_gpus:
        raise TensorfabError(
            f"--simulate-gpus {simulate_gpus}: the Ray cluster at {address} declares "
            f"{len(inventory.gpus)} GPUs; declare them when starting Ray (ray start --num-gpus)"
        )
    return backend, inventory, cpus
