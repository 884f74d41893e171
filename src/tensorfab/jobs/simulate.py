"""Replay a job trace through the scheduling policy on a virtual cluster, event by event.

The simulator is a discrete-event loop in virtual seconds: it jumps from event to event
(a job arrives, finishes, reaches its time limit, or ends its grace period after a preempt
or stop) and calls the very :func:`tensorfab.jobs.policy.decide` the daemon calls, once per
event time, doing what the policy's docstring asks of a caller (usage decayed and charged,
live jobs only, actions applied in order). A preempted job keeps the work it did (it
checkpoints in its grace period) and resumes with the rest; its time limit keeps running.

Reported: GPU utilisation (busy GPU-seconds over cluster GPUs times the span from the first
submit to the last end; and the same over the arrival window, first to last submit, where
jobs still arrive, though a trace that starts on an empty cluster warms up for part of it),
mean and p95 job completion time (JCT = end -
submit) and wait (JCT minus run time) of the jobs that finished, with the wait's p99, maximum
and the share of jobs that waited at all (over a second), the fair-share error and
GPU-hours per team, preemptions, time-limit stops, and the number of ``decide`` calls.

Steady state (``SimConfig.measure``, from :func:`tensorfab.jobs.trace.steady_window`): a finite
trace starts on an empty cluster, and with heavy-tailed run times the cluster needs many hours
of arrivals before it carries the trace's offered load. The ``steady`` part of the report
measures only the jobs submitted after that warm-up and before a cool-down at the end (the
whole trace still runs, so they meet the same jobs), and the busy share over that window.

Fair-share error: at every moment the GPUs in use are split among the teams with demand
(queued or running jobs) by weighted max-min (water-filling with the teams' shares as
weights, no team above what its jobs ask); the error is the GPU-time by which the actual
split differs from that one, halved (so a GPU moved from one team to another counts once),
over all busy GPU-time: 0 is a perfect share, 1 is all GPU-time in the wrong team.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from tensorfab.errors import TensorfabError
from tensorfab.jobs.fairshare import charge, decay_usage, share_of
from tensorfab.jobs.placement import held_gpus
from tensorfab.jobs.policy import (
    Cancel,
    Job,
    Node,
    PolicyConfig,
    Preempt,
    Start,
    State,
    Stop,
    decide,
    fits_anywhere,
)
from tensorfab.jobs.trace import TraceJob

WAITED_S = 1.0  # a job that started more than this after its submit (in total) waited
# event kinds, in the order they are handled at one instant: ends free GPUs before arrivals
FINISH, STOPPED, ARRIVE, LIMIT = 0, 1, 2, 3


@dataclass(frozen=True)
class SimConfig:
    """The virtual cluster and the policy to run on it."""

    gpus: int = 1024
    gpus_per_node: int = 8
    cores_per_gpu: int = 4  # a node has gpus_per_node * cores_per_gpu cores
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    horizon_s: float | None = None  # stop at this virtual time; None: when every job ended
    # submit times of the jobs measured in steady state (trace.steady_window); None: no such part
    measure: tuple[float, float] | None = None


@dataclass
class SimJob:
    """The simulator's record of one trace job."""

    trace: TraceJob
    job: Job  # the policy's view, replaced on every change
    remaining_s: float
    limit_left_s: float
    token: int = 0  # bumped at each start, so events of an earlier run are ignored
    stop_kind: str = ""  # "preempt" | "stop" while in a grace period
    end: float | None = None
    outcome: str | None = None
    first_start: float | None = None


def build_nodes(config: SimConfig) -> tuple[Node, ...]:
    """``gpus / gpus_per_node`` identical nodes (the last one smaller if it does not divide)."""
    if config.gpus < 1 or config.gpus_per_node < 1 or config.cores_per_gpu < 1:
        raise TensorfabError("--gpus, --gpus-per-node and cores per GPU must be >= 1")
    nodes, left, i = [], config.gpus, 0
    while left > 0:
        n = min(left, config.gpus_per_node)
        cores = tuple(range(n * config.cores_per_gpu))
        nodes.append(Node(f"node{i:04d}", tuple(range(n)), cores, 1 << 40))
        left, i = left - n, i + 1
    return tuple(nodes)


class Simulation:
    """One replay of a trace; :meth:`run` returns the report."""

    def __init__(
        self,
        trace: list[TraceJob],
        config: SimConfig,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.config = config
        self.nodes = build_nodes(config)
        self.progress = progress
        self.jobs: dict[int, SimJob] = {}
        self.events: list[tuple[float, int, int, int, int]] = []
        self._seq = 0
        for i, tj in enumerate(trace, 1):
            self._admit(i, tj)
        self.live: dict[int, Job] = {}
        self.finished: dict[int, str] = {}
        self.stopping: set[int] = set()
        self.usage: dict[str, float] = {}
        self.team_running: dict[str, int] = {}
        self.team_demand: dict[str, int] = {}
        self.now = 0.0
        self.stats = Stats()
        submits = [tj.submit_time for tj in trace]
        self.stats.window = (min(submits, default=0.0), max(submits, default=0.0))
        self.stats.measure = config.measure or (0.0, 0.0)

    def _admit(self, job_id: int, tj: TraceJob) -> None:
        job = Job(
            id=job_id,
            user=tj.user,
            team=tj.team,
            priority=tj.priority,
            gpus=tj.gpus,
            cpus=min(tj.cores, self.config.gpus_per_node * self.config.cores_per_gpu),
            mem_bytes=0,
            time_limit_s=tj.time_limit_s,
            submit_time=tj.submit_time,
            state="queued",
            preemptible=tj.preemptible,
        )
        problem = fits_anywhere(job, self.nodes)
        if problem:
            raise TensorfabError(
                f"trace job {job_id} (by submit time; submit_time {tj.submit_time:g}): {problem}"
            )
        self.jobs[job_id] = SimJob(tj, job, tj.duration_s, tj.time_limit_s)
        self._push(tj.submit_time, ARRIVE, job_id, 0)

    def _push(self, at: float, kind: int, job_id: int, token: int) -> None:
        self._seq += 1
        heapq.heappush(self.events, (at, kind, self._seq, job_id, token))

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> dict:
        """Replay until every job ended (or the horizon); the report as a dict."""
        wall = time.perf_counter()
        horizon = math.inf if self.config.horizon_s is None else self.config.horizon_s
        done_before = 0
        while self.events and self.events[0][0] <= horizon:
            at = self.events[0][0]
            self._advance(at)
            while self.events and self.events[0][0] == at:
                _, kind, _, job_id, token = heapq.heappop(self.events)
                self._handle(kind, job_id, token)
            self._apply(decide(self._state(), self.now, self.config.policy))
            self.stats.decisions += 1
            if self.progress and len(self.finished) - done_before >= 200:
                done_before = len(self.finished)
                self.progress(done_before, len(self.jobs))
        if math.isfinite(horizon):
            self._advance(horizon)
        return self.stats.report(self, time.perf_counter() - wall)

    def _state(self) -> State:
        return State(
            self.nodes,
            tuple(self.live.values()),
            self.finished,
            self.usage,
            frozenset(self.stopping),
        )

    def _advance(self, at: float) -> None:
        """Account the time from ``now`` to ``at``: usage, busy GPUs, fair-share error."""
        dt = at - self.now
        if dt > 0:
            policy = self.config.policy
            self.usage = decay_usage(self.usage, dt, policy.usage_half_life_s)
            for team, gpus in self.team_running.items():
                if gpus:
                    self.usage = charge(self.usage, team, gpus * dt)
            self.stats.account(self, dt)
        self.now = at

    def _handle(self, kind: int, job_id: int, token: int) -> None:
        sj = self.jobs[job_id]
        if kind == ARRIVE:
            self.live[job_id] = sj.job
            self._demand(sj.job, +1)
        elif token != sj.token or sj.outcome is not None:
            return  # an event of an earlier run, or of a job that already ended
        elif kind == FINISH:
            self._release(sj)
            self._end(sj, "succeeded")
        elif kind == STOPPED:
            self._stopped(sj)

    def _apply(self, actions: list) -> None:
        for action in actions:
            sj = self.jobs[action.job_id]
            if isinstance(action, Start):
                self._start(sj, action)
            elif isinstance(action, (Preempt, Stop)):
                self._signal(sj, "stop" if isinstance(action, Stop) else "preempt")
            elif isinstance(action, Cancel):
                self._end(sj, "cancelled")

    # -- what actions and events do to a job -------------------------------------------------

    def _start(self, sj: SimJob, action: Start) -> None:
        now = self.now
        sj.token += 1
        if sj.first_start is None:
            sj.first_start = now
        sj.job = replace(
            sj.job,
            state="running",
            start_time=now,
            node=action.node,
            devices=action.devices,
            cores=action.cores,
            extra=action.extra,
            time_limit_s=sj.limit_left_s,
        )
        self.live[sj.job.id] = sj.job
        gpus = held_gpus(sj.job)
        self.team_running[sj.job.team] = self.team_running.get(sj.job.team, 0) + gpus
        self.stats.busy += gpus
        self._push(now + sj.remaining_s, FINISH, sj.job.id, sj.token)
        if now + sj.limit_left_s < now + sj.remaining_s:
            self._push(now + sj.limit_left_s, LIMIT, sj.job.id, sj.token)

    def _signal(self, sj: SimJob, kind: str) -> None:
        sj.stop_kind = kind
        self.stopping.add(sj.job.id)
        self._push(self.now + self.config.policy.grace_s, STOPPED, sj.job.id, sj.token)

    def _stopped(self, sj: SimJob) -> None:
        start = sj.job.start_time
        ran = self.now - (self.now if start is None else start)
        sj.remaining_s -= ran
        sj.limit_left_s -= ran
        kind = sj.stop_kind
        self._release(sj)
        if kind == "stop":
            self.stats.stops += 1
            self._end(sj, "failed")
            return
        self.stats.preemptions += 1
        sj.job = replace(
            sj.job,
            state="preempted",
            start_time=None,
            node=None,
            devices=(),
            cores=(),
            extra=(),
            queued_since=self.now,
        )
        self.live[sj.job.id] = sj.job

    def _release(self, sj: SimJob) -> None:
        gpus = held_gpus(sj.job)
        self.team_running[sj.job.team] -= gpus
        self.stats.busy -= gpus
        self.stopping.discard(sj.job.id)
        sj.stop_kind = ""

    def _end(self, sj: SimJob, outcome: str) -> None:
        sj.end, sj.outcome = self.now, outcome
        self.finished[sj.job.id] = outcome
        self.live.pop(sj.job.id, None)
        self._demand(sj.job, -1)

    def _demand(self, job: Job, sign: int) -> None:
        self.team_demand[job.team] = self.team_demand.get(job.team, 0) + sign * job.gpus


@dataclass
class Stats:
    """What the replay measures as it goes."""

    busy: int = 0  # GPUs held right now
    busy_gpu_s: float = 0.0
    window: tuple[float, float] = (0.0, 0.0)  # first and last submit time
    window_busy_gpu_s: float = 0.0
    measure: tuple[float, float] = (0.0, 0.0)  # SimConfig.measure: the steady part
    measure_busy_gpu_s: float = 0.0
    misplaced_gpu_s: float = 0.0
    team_gpu_s: dict[str, float] = field(default_factory=dict)
    preemptions: int = 0
    stops: int = 0
    decisions: int = 0

    def account(self, sim: Simulation, dt: float) -> None:
        self.busy_gpu_s += self.busy * dt
        self.window_busy_gpu_s += self.busy * _overlap(sim.now, dt, self.window)
        self.measure_busy_gpu_s += self.busy * _overlap(sim.now, dt, self.measure)
        for team, gpus in sim.team_running.items():
            self.team_gpu_s[team] = self.team_gpu_s.get(team, 0.0) + gpus * dt
        if self.busy:
            fair = fair_split(self.busy, sim.team_demand, sim.config.policy.shares)
            off = sum(abs(sim.team_running.get(t, 0) - fair.get(t, 0.0)) for t in _teams(sim))
            self.misplaced_gpu_s += off / 2 * dt

    def report(self, sim: Simulation, wall_s: float) -> dict:
        done = [sj for sj in sim.jobs.values() if sj.outcome == "succeeded"]
        ends = [sj.end for sj in sim.jobs.values() if sj.end is not None]
        first = min((sj.trace.submit_time for sj in sim.jobs.values()), default=0.0)
        last = sim.config.horizon_s if sim.config.horizon_s is not None else max(ends, default=0.0)
        span = max(last - first, 1e-9)
        outcomes = [sj.outcome for sj in sim.jobs.values()]
        return {
            "policy": sim.config.policy.policy,
            "backfill": sim.config.policy.backfill,
            "gpus": sim.config.gpus,
            "gpus_per_node": sim.config.gpus_per_node,
            "jobs": len(sim.jobs),
            "succeeded": len(done),
            "failed": outcomes.count("failed"),
            "cancelled": outcomes.count("cancelled"),
            "unfinished": outcomes.count(None),
            "span_s": span,
            "utilisation": self.busy_gpu_s / (sim.config.gpus * span),
            "utilisation_arrivals": _busy_share(
                self.window_busy_gpu_s, sim.config.gpus, self.window
            ),
            **job_times(done),
            "fair_share_error": self.misplaced_gpu_s / self.busy_gpu_s if self.busy_gpu_s else 0.0,
            "team_gpu_hours": {t: v / 3600 for t, v in sorted(self.team_gpu_s.items())},
            "preemptions": self.preemptions,
            "time_limit_stops": self.stops,
            "decisions": self.decisions,
            "wall_s": wall_s,
            **({"steady": self._steady(sim, done)} if sim.config.measure else {}),
        }

    def _steady(self, sim: Simulation, done: list[SimJob]) -> dict:
        """The jobs submitted in ``SimConfig.measure`` and the cluster's busy share meanwhile."""
        lo, hi = self.measure
        inside = [sj for sj in sim.jobs.values() if lo <= sj.trace.submit_time <= hi]
        last = self.window[1]
        late = sum(sj.first_start is None or sj.first_start > last for sj in inside)
        return {
            "from_s": lo,
            "to_s": hi,
            "jobs": len(inside),
            "utilisation": _busy_share(self.measure_busy_gpu_s, sim.config.gpus, self.measure),
            **job_times([sj for sj in done if lo <= sj.trace.submit_time <= hi]),
            # measured jobs that had not started when the last job arrived: what the
            # cool-down is for (they waited on without the load of later arrivals)
            "started_after_last_arrival": late / len(inside) if inside else 0.0,
        }


def job_times(done: list[SimJob]) -> dict:
    """Mean and quantiles of JCT (end - submit) and wait (JCT - run time) of finished jobs."""
    jct = sorted(sj.end - sj.trace.submit_time for sj in done)
    wait = sorted(sj.end - sj.trace.submit_time - sj.trace.duration_s for sj in done)
    return {
        "mean_jct_s": _mean(jct),
        "p95_jct_s": _p95(jct),
        "mean_wait_s": _mean(wait),
        "p95_wait_s": _p95(wait),
        "p99_wait_s": _quantile(wait, 0.99),
        "max_wait_s": wait[-1] if wait else 0.0,
        "waited_share": sum(w > WAITED_S for w in wait) / len(wait) if wait else 0.0,
    }


def _overlap(start: float, dt: float, window: tuple[float, float]) -> float:
    """How much of ``[start, start + dt]`` lies inside ``window``."""
    return max(0.0, min(start + dt, window[1]) - max(start, window[0]))


def _busy_share(busy_gpu_s: float, gpus: int, window: tuple[float, float]) -> float:
    width = window[1] - window[0]
    return busy_gpu_s / (gpus * width) if width > 0 else 0.0


def _teams(sim: Simulation) -> set[str]:
    return set(sim.team_running) | set(sim.team_demand)


def fair_split(
    gpus: float, demand: Mapping[str, int], shares: Mapping[str, float]
) -> dict[str, float]:
    """``gpus`` split by weighted max-min among teams with demand, none above its demand."""
    teams = {t: float(d) for t, d in demand.items() if d > 0}
    split = dict.fromkeys(teams, 0.0)
    left = float(gpus)
    while teams and left > 1e-9:
        weight = sum(share_of(shares, t) for t in teams)
        if weight <= 0:
            break
        unit = left / weight
        capped = {t for t, d in teams.items() if d - split[t] <= unit * share_of(shares, t)}
        if not capped:
            for t in teams:
                split[t] += unit * share_of(shares, t)
            break
        for t in sorted(capped):
            left -= teams[t] - split[t]
            split[t] = teams[t]
            del teams[t]
    return split


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile of sorted ``values``."""
    return _quantile(values, 0.95)


def _quantile(values: list[float], q: float) -> float:
    """Nearest-rank ``q`` quantile of sorted ``values``."""
    if not values:
        return 0.0
    return values[max(0, math.ceil(q * len(values)) - 1)]


def simulate(
    trace: list[TraceJob],
    config: SimConfig,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Replay ``trace`` on the cluster ``config`` describes; the report (see the module doc)."""
    return Simulation(trace, config, progress).run()
