"""The machinery behind :func:`tensorfab.jobs.policy.decide`: one pass over an ordered queue.

The rules are described in :mod:`tensorfab.jobs.policy`; this module applies them: time-limit
stops, dependency cancels, the queue order, starts, preemption and the EASY reservation.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from tensorfab.jobs.fairshare import share_of
from tensorfab.jobs.placement import Cluster, Placement, Pool, Request, held_gpus
from tensorfab.jobs.policy_types import (
    QUEUED,
    Action,
    Cancel,
    Job,
    PolicyConfig,
    Preempt,
    Start,
    State,
    Stop,
    job_end,
)

MAX_VICTIM_SEARCH = 12  # more candidates on one node than this: youngest first, no subsets


@dataclass
class Reservation:
    """The EASY reservation of the head job: when, where, and what it leaves over there."""

    time: float
    nodes: frozenset[str]
    spare: Request  # on a single reserved node; nothing on the whole nodes of a wide job

    def allows(self, pool: Pool, req: Request, ends: float) -> bool:
        if ends <= self.time:
            return True
        if pool.node.name not in self.nodes:
            return True
        s = self.spare
        return req.gpus <= s.gpus and req.cpus <= s.cpus and req.mem <= s.mem


@dataclass
class Pass:
    """The working state of one decide call."""

    state: State
    now: float
    config: PolicyConfig
    cluster: Cluster
    running: dict[int, Job]
    stopping: set[int]
    promised: set[int] = field(default_factory=set)  # stopping jobs whose resources are spoken for
    started: list[tuple[Job, list[Placement]]] = field(default_factory=list)
    team_gpus: dict[str, int] = field(default_factory=dict)
    actions: list[Action] = field(default_factory=list)
    failed_preempts: set[tuple] = field(default_factory=set)
    by_node: dict[str, list[tuple[Job, tuple[int, int, int]]]] | None = None  # when needed
    lowest_preemptible: float = math.inf  # the lowest priority among preemptible running jobs


def schedule(state: State, now: float, config: PolicyConfig) -> list[Action]:
    """Stops, then cancels, then starts and preemptions in queue order."""
    running = {j.id: j for j in state.jobs if j.state == "running"}
    actions: list[Action] = _stops(running.values(), state.stopping, now)
    stopping = set(state.stopping) | {a.job_id for a in actions}
    cancels, waiting = _cancels(state)
    actions += cancels
    cancelled = {a.job_id for a in cancels}
    ready = [
        j for j in state.jobs if j.state in QUEUED and j.id not in cancelled and j.id not in waiting
    ]
    if not ready:  # nothing to start or to preempt for
        return actions
    run = Pass(state, now, config, Cluster(state.nodes, running.values()), running, stopping)
    run.actions = actions
    run.team_gpus = _team_gpus(running.values(), stopping)
    _fill(run, _ordered(run, ready))
    return run.actions


def _stops(running: Iterable[Job], stopping: frozenset[int], now: float) -> list[Action]:
    over = [j for j in running if j.id not in stopping and now >= job_end(j)]
    return [
        Stop(j.id, f"time limit of {j.time_limit_s:g} s reached") for j in sorted(over, key=_id)
    ]


def _cancels(state: State) -> tuple[list[Action], set[int]]:
    """Jobs to cancel (a dependency failed, was cancelled or is unknown) and jobs still waiting."""
    live = {j.id: j for j in state.jobs}
    dependent = sorted((j for j in state.jobs if j.after and j.state != "running"), key=_id)
    cancelled: dict[int, str] = {}
    changed = True
    while changed:  # a cancel makes the jobs after it cancelled too, in the same call
        changed = False
        for job in dependent:
            if job.id in cancelled:
                continue
            reason = _broken_dependency(job, state.finished, live, cancelled)
            if reason:
                cancelled[job.id] = reason
                changed = True
    waiting = {
        j.id
        for j in dependent
        if j.id not in cancelled and any(state.finished.get(d) != "succeeded" for d in j.after)
    }
    actions: list[Action] = [Cancel(i, cancelled[i]) for i in sorted(cancelled)]
    return actions, waiting


def _broken_dependency(
    job: Job, finished: Mapping[int, str], live: Mapping[int, Job], cancelled: Mapping[int, str]
) -> str | None:
    for dep in job.after:
        if dep in cancelled:
            return f"dependency {dep} was cancelled"
        outcome = finished.get(dep)
        if outcome in ("failed", "cancelled"):
            return f"dependency {dep} {outcome}"
        if outcome is None and dep not in live:
            return f"dependency {dep} is unknown"
    return None


def _id(job: Job) -> int:
    return job.id


def _team_gpus(running: Iterable[Job], stopping: set[int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for job in running:
        if job.id not in stopping:
            out[job.team] = out.get(job.team, 0) + held_gpus(job)
    return out


def queued_since(job: Job) -> float:
    return job.submit_time if job.queued_since is None else job.queued_since


def _order_key(run: Pass):
    """The queue order as a sort key: ageing, then within-quota, then fifo or priority.

    Under ``fair`` the teams' turns within one (tier, priority) group are interleaved by
    :func:`_fair_order`, since they change as jobs start.
    """
    config, now = run.config, run.now
    fifo = config.policy == "fifo"
    max_wait = math.inf if config.max_wait_s is None else config.max_wait_s
    quotas, team_gpus = config.quotas, run.team_gpus

    def key(job: Job) -> tuple:
        since = queued_since(job)
        if now - since > max_wait:
            return (0, 0, since, job.id)
        quota = quotas.get(job.team)
        tier = 1 if quota is not None and team_gpus.get(job.team, 0) + job.gpus <= quota else 2
        return (tier, 0 if fifo else -job.priority, since, job.id)

    return key


def _ordered(run: Pass, ready: list[Job]) -> Iterator[Job]:
    key = _order_key(run)
    keyed = sorted(((key(j), j) for j in ready), key=lambda kj: kj[0])
    if run.config.policy != "fair":
        return (j for _, j in keyed)
    return _fair_order(run, keyed)


def _fair_order(run: Pass, keyed: list[tuple[tuple, Job]]) -> Iterator[Job]:
    """Within each (tier, priority) group, the team with the least usage per share goes next.

    Usage here is projected: the decayed usage the caller passed plus, for every running job
    and every job this pass starts, its GPUs times the time it has left (to its time limit, at
    most ``fair_lookahead_s``). So one pass does not hand a team that was behind every free
    GPU at once. Ordering by ``usage / share`` is ordering by Slurm's factor
    ``2 ** -(usage fraction / share fraction)``, since both fractions share their totals.
    """
    config = run.config
    used = _projected_usage(run)
    for (tier, _), group in itertools.groupby(keyed, key=lambda kj: kj[0][:2]):
        if tier == 0:  # aged jobs: oldest first, before any other rule
            yield from (j for _, j in group)
            continue
        queues: dict[str, list[tuple[tuple, Job]]] = {}
        for kj in group:
            queues.setdefault(kj[1].team, []).append(kj)
        heap = [(_ratio(used, config, t), q[0][0][2:], t, 0) for t, q in queues.items()]
        heapq.heapify(heap)
        while heap:
            _, _, team, i = heapq.heappop(heap)
            job, before = queues[team][i][1], len(run.started)
            yield job
            if len(run.started) > before:  # it started: its team used more
                used[team] = used.get(team, 0.0) + job.gpus * _lookahead(config, job.time_limit_s)
            if i + 1 < len(queues[team]):
                nxt = queues[team][i + 1][0][2:]
                heapq.heappush(heap, (_ratio(used, config, team), nxt, team, i + 1))


def _projected_usage(run: Pass) -> dict[str, float]:
    used = dict(run.state.usage)
    for job in run.running.values():
        if job.id not in run.stopping:
            left = job_end(job) - run.now
            used[job.team] = used.get(job.team, 0.0) + held_gpus(job) * _lookahead(run.config, left)
    return used


def _lookahead(config: PolicyConfig, left_s: float) -> float:
    return max(0.0, min(left_s, config.fair_lookahead_s))


def _ratio(used: Mapping[str, float], config: PolicyConfig, team: str) -> float:
    share = share_of(config.shares, team)
    use = used.get(team, 0.0)
    if share <= 0:
        return math.inf if use > 0 else 0.0
    return use / share


def _fill(run: Pass, order: Iterable[Job]) -> None:
    """Start jobs in order; the first that can neither start nor preempt becomes the head."""
    reservation: Reservation | None = None
    cluster = run.cluster
    for job in order:
        if reservation is None:
            req = Request.of(job)
            if _try_start(run, job, req, None) or _try_preempt(run, job, req):
                continue
            if not run.config.backfill:
                return
            reservation = _reserve(run, job, req)
            if reservation is None:  # no reservation can be promised: nothing may jump ahead
                return
        elif cluster.exhausted():  # every core is taken: no later job can start
            return
        elif cluster.might_fit(job.gpus, job.cpus):
            _try_start(run, job, Request.of(job), reservation)


def _try_start(run: Pass, job: Job, req: Request, reservation: Reservation | None) -> bool:
    cluster = run.cluster
    if not cluster.might_fit(req.gpus, req.cpus):
        return False
    allowed = None
    if reservation is not None:
        ends = run.now + job.time_limit_s
        allowed = lambda pool: reservation.allows(pool, req, ends)  # noqa: E731
    parts = cluster.place(req, allowed)
    if parts is None:
        return False
    if reservation is not None:
        _spend(reservation, parts, req, run.now + job.time_limit_s)
    cluster.take(parts, job.mem_bytes)
    run.started.append((job, parts))
    first = parts[0]
    run.actions.append(Start(job.id, first.node, first.devices, first.cores, tuple(parts[1:])))
    return True


def _spend(reservation: Reservation, parts: list[Placement], req: Request, ends: float) -> None:
    """A backfilled job on the reserved node that outlives the reservation uses its spare."""
    if ends <= reservation.time:
        return
    if any(p.node in reservation.nodes for p in parts):
        s = reservation.spare
        reservation.spare = Request(s.gpus - req.gpus, s.cpus - req.cpus, s.mem - req.mem)


# -- preemption ------------------------------------------------------------------------------


def _try_preempt(run: Pass, job: Job, req: Request) -> bool:
    """Preempt the fewest (then youngest) victims on one node that let ``job`` start there."""
    reclaim = _may_look_for_victims(run, job)
    if reclaim is None:
        return False
    memo = (job.priority, req, reclaim, job.team if reclaim else "")
    if memo in run.failed_preempts:
        return False
    best = None
    for pool in run.cluster.pools.values():
        if len(pool.node.gpus) < req.gpus or len(pool.node.cores) < req.cpus:
            continue
        choice = _victims_on(run, pool, job, req, reclaim)
        if choice is not None and (best is None or choice[0] < best[0]):
            best = choice
    if best is None:
        run.failed_preempts.add(memo)
        return False
    _, pool, victims, freeing = best
    for victim in victims:
        why = f"for job {job.id} (priority {job.priority} > {victim.priority})"
        if victim.priority >= job.priority or run.config.policy == "fifo":
            why = f"quota reclaim for team {job.team} (job {job.id})"
        run.actions.append(Preempt(victim.id, why))
        run.stopping.add(victim.id)
    run.promised.update(v.id for v in victims)
    run.promised.update(freeing)
    run.cluster.hold(pool.node.name, req)
    return True


def _may_look_for_victims(run: Pass, job: Job) -> bool | None:
    """None when no victim can exist for ``job``; else whether it reclaims its quota."""
    if not run.config.preemption or job.gpus > run.cluster.widest:
        return None
    if run.by_node is None:
        _index_running(run)
    reclaim = _within_quota(run, job)
    by_priority = run.config.policy != "fifo" and run.lowest_preemptible < job.priority
    if not (by_priority or reclaim) and not run.stopping:
        return None  # nobody could be preempted for it, and nothing is on its way out
    return reclaim


def _within_quota(run: Pass, job: Job) -> bool:
    quota = run.config.quotas.get(job.team)
    return quota is not None and run.team_gpus.get(job.team, 0) + job.gpus <= quota


def _may_preempt(run: Pass, job: Job, victim: Job, reclaim: bool) -> bool:
    if not victim.preemptible or victim.id in run.stopping:
        return False
    if run.config.policy != "fifo" and victim.priority < job.priority:
        return True
    if reclaim and victim.team != job.team:
        quota = run.config.quotas.get(victim.team, 0)
        return run.team_gpus.get(victim.team, 0) > quota
    return False


def _index_running(run: Pass) -> None:
    """Running jobs by node, youngest first, with what each holds there (victim search)."""
    run.by_node = {}
    for job in sorted(run.running.values(), key=_youth):
        if job.node is None:
            continue
        parts = ((job.node, job.devices, job.cores), *job.extra)
        for node, devices, cores in parts:
            run.by_node.setdefault(node, []).append(
                (job, (len(devices), len(cores), job.mem_bytes))
            )
        if job.preemptible:
            run.lowest_preemptible = min(run.lowest_preemptible, job.priority)


def _youth(job: Job) -> tuple[float, int]:
    return (-(job.start_time or 0.0), -job.id)


def _on_node(job: Job, node: str) -> tuple[int, int, int]:
    if job.node == node:
        return len(job.devices), len(job.cores), job.mem_bytes
    for part in job.extra:
        if part.node == node:
            return len(part.devices), len(part.cores), job.mem_bytes
    return 0, 0, 0


def _victims_on(run: Pass, pool: Pool, job: Job, req: Request, reclaim: bool):
    """(rank, pool, victims, stopping jobs counted) for the best victim set here, or None."""
    have = [pool.n_gpus, pool.n_cores, pool.mem]
    freeing, candidates = [], []
    promised, stopping = run.promised, run.stopping
    for other, used in (run.by_node or {}).get(pool.node.name, ()):
        if other.id in promised:
            continue
        if other.id in stopping:
            freeing.append(other.id)
            have = [h + u for h, u in zip(have, used, strict=True)]
        elif other.preemptible and _may_preempt(run, job, other, reclaim):
            candidates.append((other, used))
    if not candidates and not freeing:  # it did not fit as things are: nothing changes here
        return None
    victims = _fewest_youngest(candidates, have, (req.gpus, req.cpus, req.mem))
    if victims is None:
        return None
    youth = tuple(sorted(_youth(v) for v in victims))
    return (len(victims), youth, pool.index), pool, victims, freeing


def _fewest_youngest(candidates: list, have: list[int], need: tuple[int, int, int]):
    """The smallest set of candidates freeing enough, the youngest among sets that small."""
    if all(h >= n for h, n in zip(have, need, strict=False)):
        return []
    if not _frees_enough(candidates, have, need):  # not even all of them together
        return None
    # candidates come youngest first (see _index_running)
    if len(candidates) > MAX_VICTIM_SEARCH:
        return _greedy(candidates, have, need)
    for size in range(1, len(candidates) + 1):
        for combo in itertools.combinations(candidates, size):  # youngest sets come first
            if _frees_enough(combo, have, need):
                return [c[0] for c in combo]
    return None


def _greedy(candidates: list, have: list[int], need: tuple[int, int, int]):
    chosen = []
    for cand in candidates:
        chosen.append(cand)
        if _frees_enough(chosen, have, need):
            return [c[0] for c in chosen]
    return None


def _frees_enough(combo: Iterable, have: list[int], need: tuple[int, int, int]) -> bool:
    gpus, cores, mem = have
    for _, (g, c, m) in combo:
        gpus, cores, mem = gpus + g, cores + c, mem + m
    return gpus >= need[0] and cores >= need[1] and mem >= need[2]


# -- the EASY reservation --------------------------------------------------------------------


def _releases(run: Pass) -> list[tuple[float, str, tuple[int, int, int]]]:
    """(time, node, (gpus, cores, mem)) that running and just-started jobs give back, by time."""
    out = []
    grace_end = run.now + run.config.grace_s
    for job in run.running.values():
        if job.id in run.promised:
            continue
        end = grace_end if job.id in run.stopping else job_end(job)
        if math.isfinite(end):
            out.append((end, job.node, (len(job.devices), len(job.cores), job.mem_bytes)))
            out += [(end, p.node, (len(p.devices), len(p.cores), job.mem_bytes)) for p in job.extra]
    for job, parts in run.started:
        end = run.now + job.time_limit_s
        if math.isfinite(end):
            out += [(end, p.node, (len(p.devices), len(p.cores), job.mem_bytes)) for p in parts]
    out.sort(key=lambda r: (r[0], r[1]))
    return out


def _reserve(run: Pass, job: Job, req: Request) -> Reservation | None:
    """When and where the head job will fit as running jobs reach their time limits."""
    if job.gpus > run.cluster.widest:
        return _reserve_wide(run, req)
    pools = run.cluster.pools
    free = {name: [p.n_gpus, p.n_cores, p.mem] for name, p in pools.items()}
    need = (req.gpus, req.cpus, req.mem)
    for time, group in itertools.groupby(_releases(run), key=lambda r: r[0]):
        touched = set()
        for _, node, used in group:
            if node in free:
                free[node] = [f + u for f, u in zip(free[node], used, strict=False)]
                touched.add(node)
        fitting = [n for n in touched if all(f >= x for f, x in zip(free[n], need, strict=False))]
        if fitting:
            node = min(fitting, key=lambda n: (free[n][0] - req.gpus, pools[n].index))
            g, c, m = free[node]
            return Reservation(
                time, frozenset([node]), Request(g - req.gpus, c - req.cpus, m - req.mem)
            )
    return None


def _reserve_wide(run: Pass, req: Request) -> Reservation | None:
    """A job wider than a node waits for whole nodes: the earliest set of nodes to go idle."""
    pools = run.cluster.pools
    given = {name: [p.n_gpus, p.n_cores, p.mem] for name, p in pools.items()}
    last = dict.fromkeys(pools, run.now)
    for time, node, used in _releases(run):
        if node in given:
            given[node] = [g + u for g, u in zip(given[node], used, strict=False)]
            last[node] = max(last[node], time)
    idle_at = {}
    for name, pool in pools.items():  # a node with a hold or an endless job never goes idle
        n = pool.node
        whole = given[name] == [len(n.gpus), len(n.cores), n.mem_bytes]
        idle_at[name] = last[name] if whole else math.inf
    ranked = sorted(
        (n for n in pools if pools[n].node.mem_bytes >= req.mem),
        key=lambda n: (idle_at[n], -len(pools[n].node.gpus), pools[n].index),
    )
    chosen, total = [], 0
    for name in ranked:
        if total >= req.gpus or not math.isfinite(idle_at[name]):
            break
        chosen.append(name)
        total += len(pools[name].node.gpus)
    if total < req.gpus:
        return None
    return Reservation(max(idle_at[n] for n in chosen), frozenset(chosen), Request(0, 0, 0))
