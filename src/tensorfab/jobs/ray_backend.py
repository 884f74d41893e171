"""The Ray backend: the daemon's queue and policy, Ray's placement and processes.

``tensorfab jobs up --backend ray --address ADDR`` keeps everything of the local daemon (the
store, priorities, fair share, preemption, accounting) and replaces only how an attempt
runs: each attempt is a detached Ray actor, ``JobRunner``, that holds the job's resources
(``num_gpus``/``num_cpus``; a job of several GPUs reserves one bundle of all of them in a
``STRICT_PACK`` placement group first, so a gang starts whole or not at all). The actor
runs the attempt exactly as the local backend does, under ``tensorfab.jobs.supervisor`` on
its node, with ``CUDA_VISIBLE_DEVICES`` set to the GPUs Ray assigned to it. So a preemption
is still SIGTERM to the job's process group -> checkpoint -> exit 143 -> requeue -> resume,
and the job folder (``exit.json``, logs) is the same as a local job's.

The daemon's node is the cluster as Ray reports it (its GPU and CPU totals). The job
folders must be on storage the Ray nodes see (trivially so on a local Ray). Actors are
named ``tensorfab-job-<id>-a<attempt>`` in the ``tensorfab`` namespace and outlive the
daemon, so a restarted daemon adopts them by name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tensorfab.engine.raycluster import NAMESPACE, connect
from tensorfab.errors import TensorfabError
from tensorfab.jobs.backend import Ended, Gone, Handle, Launch, LocalBackend
from tensorfab.jobs.inventory import Gpu, Inventory
from tensorfab.jobs.ray_runner import JobRunner

SIGNAL_TIMEOUT_S = 10.0


def actor_name(job_id: int, attempt: int) -> str:
    return f"tensorfab-job-{job_id}-a{attempt}"


@dataclass
class RayJob:
    """What the daemon holds of a started attempt: the actor and the result it will give."""

    actor: Any
    result: Any  # ObjectRef of JobRunner.result
    group: Any = None  # the gang's placement group
    ready: Any = None  # ObjectRef that resolves once Ray has placed the actor


def ray_inventory(ray: Any, cpu_slots: int | None) -> tuple[Inventory, int]:
    """The cluster as one node for the policy: its GPUs (by index) and CPU slots."""
    total = ray.cluster_resources()
    gpus = [Gpu(f"ray{i}", i, "Ray GPU", 0, True) for i in range(int(total.get("GPU", 0)))]
    cpus = cpu_slots or max(1, int(total.get("CPU", 1)))
    return Inventory(gpus, list(range(cpus)), int(total.get("memory", 0))), cpus


class RayBackend:
    """Attempts as Ray actors; see the module docstring."""

    def __init__(self, address: str, simulate_gpus: int | None = None) -> None:
        self.ray = connect(address, num_gpus=simulate_gpus)
        self.runner = self.ray.remote(JobRunner)
        self.local = LocalBackend()

    def start(self, launch: Launch) -> Handle:
        options: dict[str, Any] = {
            "name": actor_name(launch.job_id, launch.attempt),
            "namespace": NAMESPACE,
            "lifetime": "detached",
            "max_concurrency": 4,
            "max_restarts": 0,
            "num_cpus": launch.cpus,
            "num_gpus": launch.gpus,
        }
        group = self._gang(launch) if launch.gpus > 1 else None
        if group is not None:
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(group, 0)
        actor = self.runner.options(**options).remote()
        record = {**asdict(launch), "job_dir": str(launch.job_dir)}
        actor.run.remote(record)
        job = RayJob(actor, actor.result.remote(), group, actor.__ray_ready__.remote())
        return Handle(launch.job_id, launch.attempt, launch.job_dir, job)

    def _gang(self, launch: Launch) -> Any:
        """All the job's GPUs and cores in one bundle on one node: whole or not at all."""
        from ray.util.placement_group import placement_group

        bundle = {"CPU": float(launch.cpus), "GPU": float(launch.gpus)}
        return placement_group([bundle], strategy="STRICT_PACK")

    def signal(self, handle: Handle, signum: int) -> bool:
        job: RayJob | None = handle.process
        if job is None:
            return self.local.signal(handle, signum)
        if job.ready is not None and not self.ray.wait([job.ready], timeout=0)[0]:
            # still waiting for Ray to place it (the cluster is busier than the policy knew):
            # nothing runs yet, so a stop is the end of the actor and its reservation
            self._release(job)
            return True
        try:
            return bool(self.ray.get(job.actor.signal.remote(signum), timeout=SIGNAL_TIMEOUT_S))
        except self.ray.exceptions.GetTimeoutError:
            return False
        except self.ray.exceptions.RayActorError:
            return self.local.signal(Handle(handle.job_id, handle.attempt, handle.job_dir), signum)

    def poll(self, handle: Handle) -> Ended | Gone | None:
        job: RayJob | None = handle.process
        plain = Handle(handle.job_id, handle.attempt, handle.job_dir)
        if job is None:
            return self.local.poll(plain)
        ready, _ = self.ray.wait([job.result], timeout=0)
        if not ready:
            return None
        try:
            outcome = self.ray.get(job.result)
        except self.ray.exceptions.RayError:
            outcome = {}  # the actor died (killed, node lost): the job folder tells the rest
        self._release(job)
        if outcome:
            return Ended(**outcome)
        handle.process = None  # from now on read from the job folder, as the local backend does
        return self.local.poll(plain)

    def _release(self, job: RayJob) -> None:
        self.ray.kill(job.actor, no_restart=True)
        if job.group is not None:
            from ray.util.placement_group import remove_placement_group

            remove_placement_group(job.group)
            job.group = None

    def adopt(self, job_id: int, attempt: int, job_dir: Path) -> Handle | None:
        """A restarted daemon takes over the attempt's actor by name, if it still lives."""
        try:
            actor = self.ray.get_actor(actor_name(job_id, attempt), namespace=NAMESPACE)
        except ValueError:
            return self.local.adopt(job_id, attempt, job_dir)
        return Handle(job_id, attempt, job_dir, RayJob(actor, actor.result.remote()))


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
