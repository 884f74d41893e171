"""The types the scheduling policy reads and returns (jobs, nodes, configuration, actions),
kept apart from :mod:`tensorfab.jobs.policy` so the modules that implement ``decide``
(schedule, placement) can import them without a cycle."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

QUEUED = ("queued", "preempted")
LIVE_STATES = ("queued", "held", "running", "preempted")
POLICIES = ("fifo", "priority", "fair")
_EMPTY: Mapping = MappingProxyType({})


class Placement(NamedTuple):
    """One node's part of a job wider than a node: the node, its GPUs and its cores."""

    node: str
    devices: tuple[int, ...]
    cores: tuple[int, ...]


@dataclass(frozen=True)
class Job:
    """A live job as the policy sees it (the daemon's row, without the command)."""

    id: int
    user: str
    team: str
    priority: int  # 0 lowest .. 9 highest (the CLI maps low=2, normal=4, high=7, urgent=9)
    gpus: int  # 0 allowed (CPU-only job)
    cpus: int  # cores requested (>= 1)
    mem_bytes: int  # host memory requested per node (0 = no request)
    time_limit_s: float  # counted from start_time; math.inf when none given
    submit_time: float
    state: str  # "queued" | "held" | "running" | "preempted"
    after: tuple[int, ...] = ()  # may start when all these jobs have "succeeded"
    preemptible: bool = False  # only resumable tensorfab training is
    start_time: float | None = None  # running jobs
    node: str | None = None  # running jobs
    devices: tuple[int, ...] = ()  # running jobs: GPU indices on `node`
    cores: tuple[int, ...] = ()  # running jobs: CPU core ids on `node`
    queued_since: float | None = None  # when it last (re)entered the queue; None = submit_time
    extra: tuple[Placement, ...] = ()  # running jobs wider than one node: the other nodes


@dataclass(frozen=True)
class Node:
    """A machine jobs run on: its GPU indices, usable core ids and memory."""

    name: str
    gpus: tuple[int, ...]
    cores: tuple[int, ...]
    mem_bytes: int
    gpu_distance: Mapping[tuple[int, int], int] | None = None  # NVML level per pair, lower = closer


@dataclass(frozen=True)
class PolicyConfig:
    """How to order and place jobs; see the module docstring for each rule."""

    policy: str = "fair"  # "fifo" | "priority" | "fair"
    backfill: bool = True
    max_wait_s: float | None = None  # ageing: queued longer than this goes to the head
    usage_half_life_s: float = 7 * 24 * 3600  # Slurm's PriorityDecayHalfLife default
    shares: Mapping[str, float] = field(default_factory=lambda: _EMPTY)  # team -> share (1.0)
    quotas: Mapping[str, int] = field(default_factory=lambda: _EMPTY)  # team -> guaranteed GPUs
    preemption: bool = True
    grace_s: float = 30.0
    # fair: a running job counts as used this far ahead (at most its time left), see the docs
    fair_lookahead_s: float = 3600.0


@dataclass(frozen=True)
class State:
    """The snapshot :func:`decide` reads."""

    nodes: tuple[Node, ...]
    jobs: tuple[Job, ...]  # live jobs (queued, held, running, preempted)
    finished: Mapping[int, str]  # id -> "succeeded" | "failed" | "cancelled"
    usage: Mapping[str, float]  # team -> decayed GPU-seconds, as of `now`
    stopping: frozenset[int] = frozenset()  # running jobs already signalled


@dataclass(frozen=True)
class Start:
    """Run ``job_id`` on ``node`` with these GPUs and cores (and ``extra`` nodes if wider)."""

    job_id: int
    node: str
    devices: tuple[int, ...]
    cores: tuple[int, ...]
    extra: tuple[Placement, ...] = ()


@dataclass(frozen=True)
class Preempt:
    """SIGTERM, SIGKILL after the grace period; the job goes back to the queue."""

    job_id: int
    reason: str


@dataclass(frozen=True)
class Stop:
    """Past its time limit: stopped like a preempted job, then ``failed``."""

    job_id: int
    reason: str


@dataclass(frozen=True)
class Cancel:
    """A dependency failed, was cancelled or is unknown: the job never runs."""

    job_id: int
    reason: str


Action = Start | Preempt | Stop | Cancel


def fits_anywhere(job: Job, nodes: tuple[Node, ...]) -> str | None:
    """Why ``job`` can never start on ``nodes`` (None when it can): the daemon's submit check."""
    if not nodes:
        return "the cluster has no nodes"
    if job.gpus < 0 or job.cpus < 1 or job.mem_bytes < 0:
        return f"job {job.id}: gpus must be >= 0, cpus >= 1 and memory >= 0"
    widest = max(len(n.gpus) for n in nodes)
    if job.gpus > widest:
        return _fits_whole_nodes(job, nodes)
    fitting = [n for n in nodes if len(n.gpus) >= job.gpus]
    if not any(len(n.cores) >= job.cpus for n in fitting):
        most = max(len(n.cores) for n in fitting)
        return f"job {job.id}: asks for {job.cpus} cores, a node with its GPUs has at most {most}"
    if not any(len(n.cores) >= job.cpus and n.mem_bytes >= job.mem_bytes for n in fitting):
        most = max(n.mem_bytes for n in fitting if len(n.cores) >= job.cpus)
        return (
            f"job {job.id}: asks for {job.mem_bytes} bytes of memory, "
            f"a node that fits its GPUs and cores has {most}"
        )
    return None


def _fits_whole_nodes(job: Job, nodes: tuple[Node, ...]) -> str | None:
    usable = [n for n in nodes if n.mem_bytes >= job.mem_bytes and len(n.cores) >= 1]
    total = sum(len(n.gpus) for n in usable)
    if total < job.gpus:
        return f"job {job.id}: asks for {job.gpus} GPUs, the cluster has {total}" + (
            " on nodes with enough memory" if len(usable) < len(nodes) else ""
        )
    return None


def job_end(job: Job) -> float:
    """When a running job's time limit runs out (inf without one)."""
    if job.start_time is None:
        return math.inf
    return job.start_time + job.time_limit_s
