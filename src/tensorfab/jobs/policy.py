"""The scheduling policy of ``tensorfab jobs``: a pure function from (state, clock) to actions.

:func:`decide` reads a snapshot of the cluster (:class:`State`) and the time ``now`` and
returns what to do next: start queued jobs, preempt, stop or cancel running/queued ones. It
does no I/O, reads no clock, starts no process and keeps no state between calls, so the
daemon and the simulator (``jobs/simulate.py``) run the very same decisions, and the tests
drive it with hand-built states.

What the caller (daemon or simulator) must do
---------------------------------------------
1. Pass only live jobs in ``State.jobs`` (queued, held, running, preempted) and every ended
   job that a live job names in ``after`` in ``State.finished`` (id -> "succeeded" |
   "failed" | "cancelled"). A dependency found in neither is unknown: the job is cancelled.
2. Keep fair-share usage current: before each call, ``usage = decay_usage(usage, elapsed,
   config.usage_half_life_s)`` for the time since the last call, then
   ``usage = charge(usage, team, gpus * elapsed)`` for every job that held GPUs during that
   time (``gpus`` = the devices it holds, all nodes). ``State.usage`` is then "as of now".
3. Apply the returned actions in order:

   * :class:`Stop` and :class:`Preempt`: send SIGTERM, SIGKILL after ``config.grace_s``;
     put the job in ``State.stopping`` until its process has ended (its GPUs, cores and
     memory stay taken until then). A preempted job goes back to the queue with state
     ``"preempted"`` and ``queued_since`` = the time it stopped; a stopped job (time limit)
     ends ``"failed"``.
   * :class:`Start`: run the job on ``node`` with exactly ``devices`` (CUDA_VISIBLE_DEVICES)
     and ``cores`` (CPU affinity); a job wider than one node also gets ``extra`` nodes.
     From then on pass it as running with ``start_time``, ``node``, ``devices``, ``cores``
     and ``extra`` filled in.
   * :class:`Cancel`: the job never runs; it ends ``"cancelled"``.

4. Call again whenever something changed (a job submitted, ended, stopped) and at the next
   time limit. One call costs tens of milliseconds with 10,000 queued jobs on 1,024 GPUs
   (``benchmarks/jobs_policy.py`` measures it).

``time_limit_s`` counts from ``start_time``: for a job resumed after preemption, pass the
time it has left (its limit minus what it already ran), so a resumed job gets no new budget.

The rules, in the order they apply
----------------------------------
* Running jobs past ``start_time + time_limit_s`` get :class:`Stop` (unless already stopping).
* Queued/held jobs whose dependency failed, was cancelled or is unknown get :class:`Cancel`;
  a job whose dependencies have not all succeeded waits; ``"held"`` jobs never start.
* The queue order: first jobs waiting longer than ``max_wait_s`` (ageing, oldest first),
  then jobs that stay within their team's GPU quota, then the policy: ``fifo`` (queue time),
  ``priority`` (priority class, then queue time) or ``fair`` (priority class, then the team's
  fair-share factor ``2 ** -(usage_fraction / share_fraction)`` as Slurm's classic
  multifactor plugin computes it, then queue time). Ties go to the lower job id.
  The fair factor is taken on *projected* usage: the decayed usage passed in, plus each
  running job's GPUs times the time it has left (to its limit, at most
  ``fair_lookahead_s``), and it is updated as the pass starts jobs, so a team that was
  behind gets its turn without taking every free GPU at once.
* Jobs start in that order while they fit. A job that does not fit may preempt (below).
  The first job that can neither start nor preempt is the *head*: without backfill nothing
  after it starts; with backfill (EASY) it gets a reservation at the earliest time running
  jobs' ``start_time + time_limit_s`` free enough for it, and a later job starts only if it
  ends before that time or uses resources the reservation leaves over (or another node).
  Running jobs with no time limit never free anything in this estimate, so a head blocked
  by them gets no reservation and nothing backfills (give ``--time`` to let small jobs in);
  a job in its grace period counts as ending ``grace_s`` from now.
* Preemption (``config.preemption``): a job that cannot start may take the resources of
  running *preemptible* jobs that either have a lower priority (not under ``fifo``) or belong
  to a team over its quota while the job's team is within it (quota reclaim; with quotas
  set, a team without one has a quota of 0, so all it runs is borrowed). On one node,
  the fewest victims are chosen, then the youngest; jobs already stopping count as freeing.
  The job then waits for them (its resources are held, so nothing else takes them).
  Only jobs ahead of the head preempt; a job wider than one node does not preempt.
* Placement: a job gets all its GPUs on one node at once (gang) or waits; the node that
  leaves the fewest GPUs free (best fit) wins, ties by node order. Where ``gpu_distance`` is
  known, the set of free GPUs with the smallest largest pairwise distance is taken. Cores:
  the lowest free ids. Memory: the request must fit what running jobs leave of the node.
* A job asking for more GPUs than the largest node has takes whole idle nodes (all their
  GPUs and cores, its memory request per node), as few as give it enough GPUs: the first
  goes in ``Start.node/devices/cores``, the rest in ``Start.extra``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

from tensorfab.jobs.fairshare import charge, decay_usage

__all__ = [
    "Action",
    "Cancel",
    "Job",
    "Node",
    "Placement",
    "PolicyConfig",
    "Preempt",
    "Start",
    "State",
    "Stop",
    "charge",
    "decay_usage",
    "decide",
    "fits_anywhere",
]

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


def decide(state: State, now: float, config: PolicyConfig) -> list[Action]:
    """The actions to take at ``now``: stops, cancels, then starts and preemptions in order."""
    # imported here, not at the top: schedule.py imports the types defined above
    from tensorfab.jobs.schedule import schedule

    if config.policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, not {config.policy!r}")
    return schedule(state, now, config)


def job_end(job: Job) -> float:
    """When a running job's time limit runs out (inf without one)."""
    if job.start_time is None:
        return math.inf
    return job.start_time + job.time_limit_s
