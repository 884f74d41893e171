"""Where a job fits: the free GPUs, cores and memory of each node, and the choice among them.

:class:`Cluster` is the working copy of the nodes' free resources for one call of ``decide``:
it is built from the running jobs, shrinks as jobs start or hold resources, and answers
"which node, which GPUs, which cores" for a request. Nothing is ever given twice: every
GPU and core leaves the free lists when it is handed out.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tensorfab.jobs.policy_types import Job, Node, Placement

MAX_COMBINATIONS = 5000  # beyond this many GPU sets, topology falls back to the lowest ids


@dataclass
class Pool:
    """What is free on one node right now (mutable, one call of ``decide`` long).

    Only what is taken is stored; the free lists are built when a job is placed here, so a
    cluster of many nodes costs little to set up for each call.
    """

    node: Node
    index: int  # position in State.nodes: the tie-breaker
    taken_gpus: set[int]
    taken_cores: set[int]
    mem: int
    n_gpus: int = 0  # free counts
    n_cores: int = 0

    def __post_init__(self) -> None:
        self.n_gpus = len(self.node.gpus) - len(self.taken_gpus)
        self.n_cores = len(self.node.cores) - len(self.taken_cores)

    @property
    def gpus(self) -> list[int]:
        return sorted(g for g in self.node.gpus if g not in self.taken_gpus)

    @property
    def cores(self) -> list[int]:
        return sorted(c for c in self.node.cores if c not in self.taken_cores)

    def fits(self, gpus: int, cpus: int, mem: int) -> bool:
        return self.n_gpus >= gpus and self.n_cores >= cpus and self.mem >= mem

    def is_idle(self) -> bool:
        node = self.node
        return (
            self.n_gpus == len(node.gpus)
            and self.n_cores == len(node.cores)
            and self.mem == node.mem_bytes
        )

    def take(self, devices: Iterable[int], cores: Iterable[int], mem: int) -> None:
        self.taken_gpus.update(devices)
        self.taken_cores.update(cores)
        self.mem -= mem
        self.__post_init__()


@dataclass(frozen=True)
class Request:
    """What a job asks of one node (per node for a job wider than one)."""

    gpus: int
    cpus: int
    mem: int

    @classmethod
    def of(cls, job: Job) -> Request:
        return cls(job.gpus, job.cpus, job.mem_bytes)


def job_parts(job: Job) -> tuple[Placement, ...]:
    """A running job's placements: its node, then any extra nodes."""
    if job.node is None:
        return ()
    return (Placement(job.node, job.devices, job.cores), *job.extra)


def held_gpus(job: Job) -> int:
    """How many GPUs a running job holds, on all its nodes."""
    if not job.extra:
        return len(job.devices)
    return len(job.devices) + sum(len(p.devices) for p in job.extra)


class Cluster:
    """The free resources of all nodes, with the running jobs' allocations taken out."""

    def __init__(self, nodes: Iterable[Node], running: Iterable[Job]) -> None:
        taken: dict[str, tuple[set[int], set[int], list[int]]] = {}
        for job in running:
            if job.node is None:
                continue
            for node, devices, cores_used in ((job.node, job.devices, job.cores), *job.extra):
                gpus, cores, mem = taken.setdefault(node, (set(), set(), [0]))
                gpus.update(devices)
                cores.update(cores_used)
                mem[0] += job.mem_bytes
        self.pools: dict[str, Pool] = {}
        for i, node in enumerate(nodes):
            used = taken.get(node.name)
            if used is None:
                self.pools[node.name] = Pool(node, i, set(), set(), node.mem_bytes)
                continue
            gpus, cores, mem = used
            # ids a node does not have are not taken from it (a job passed with a stale id)
            gpus &= set(node.gpus)
            cores &= set(node.cores)
            self.pools[node.name] = Pool(node, i, gpus, cores, node.mem_bytes - mem[0])
        self.widest = max((len(n.node.gpus) for n in self.pools.values()), default=0)
        # pools by free GPU count (best fit looks at the fullest that fit first) and how
        # many pools have each free core count: the maxima without rescanning every node
        self._by_gpus: dict[int, dict[str, Pool]] = {}
        self._core_counts: dict[int, int] = {}
        self.idle_gpus = 0
        for pool in self.pools.values():
            self._file(pool, +1)
            if pool.is_idle():
                self.idle_gpus += pool.n_gpus

    def _file(self, pool: Pool, sign: int) -> None:
        """Add (+1) or remove (-1) ``pool`` in the indexes under its current free counts."""
        if sign > 0:
            self._by_gpus.setdefault(pool.n_gpus, {})[pool.node.name] = pool
        else:
            del self._by_gpus[pool.n_gpus][pool.node.name]
        self._core_counts[pool.n_cores] = self._core_counts.get(pool.n_cores, 0) + sign

    @property
    def max_gpus(self) -> int:
        return max((n for n, pools in self._by_gpus.items() if pools), default=0)

    @property
    def max_cores(self) -> int:
        return max((n for n, count in self._core_counts.items() if count), default=0)

    def _taken_from(
        self, pool: Pool, devices: Iterable[int], cores: Iterable[int], mem: int
    ) -> None:
        """Take from one pool, keeping the indexes and the idle count right."""
        if pool.is_idle():
            self.idle_gpus -= pool.n_gpus
        self._file(pool, -1)
        pool.take(devices, cores, mem)
        self._file(pool, +1)

    def might_fit(self, gpus: int, cpus: int) -> bool:
        """A cheap necessary condition, so most of a long queue is passed over in O(1)."""
        if gpus > self.widest:
            return gpus <= self.idle_gpus
        return gpus <= self.max_gpus and cpus <= self.max_cores

    def exhausted(self) -> bool:
        """No free core anywhere: no job (each needs one) can start."""
        return self.max_cores == 0

    def place(
        self, req: Request, allowed: Callable[[Pool], bool] | None = None
    ) -> list[Placement] | None:
        """The placement for ``req`` (not yet taken), or None when it does not fit now."""
        if req.gpus > self.widest:
            return self._place_wide(req, allowed)
        best = None
        for free in sorted(n for n, pools in self._by_gpus.items() if n >= req.gpus and pools):
            for pool in self._by_gpus[free].values():  # best fit: the fewest GPUs left over
                if pool.fits(req.gpus, req.cpus, req.mem) and (allowed is None or allowed(pool)):
                    rank = (pool.n_cores - req.cpus, pool.index)
                    if best is None or rank < best[0]:
                        best = (rank, pool)
            if best is not None:
                break
        if best is None:
            return None
        pool = best[1]
        devices = choose_gpus(pool.gpus, req.gpus, pool.node.gpu_distance)
        return [Placement(pool.node.name, devices, tuple(pool.cores[: req.cpus]))]

    def _place_wide(
        self, req: Request, allowed: Callable[[Pool], bool] | None
    ) -> list[Placement] | None:
        idle = [
            p
            for p in self.pools.values()
            if p.is_idle() and p.mem >= req.mem and (allowed is None or allowed(p))
        ]
        idle.sort(key=lambda p: (-p.n_gpus, p.index))
        chosen, total = [], 0
        for pool in idle:
            if total >= req.gpus:
                break
            chosen.append(pool)
            total += pool.n_gpus
        if total < req.gpus:
            return None
        return [Placement(p.node.name, tuple(p.gpus), tuple(p.cores)) for p in chosen]

    def take(self, parts: list[Placement], mem: int) -> None:
        """Hand ``parts`` out: their GPUs, cores and ``mem`` per node leave the free lists."""
        for part in parts:
            pool = self.pools.get(part.node)
            if pool is not None:
                self._taken_from(pool, part.devices, part.cores, mem)

    def hold(self, node: str, req: Request) -> None:
        """Keep up to ``req`` of what is free on ``node`` for a job waiting for its victims."""
        pool = self.pools[node]
        mem = min(req.mem, max(pool.mem, 0))
        self._taken_from(pool, pool.gpus[: req.gpus], pool.cores[: req.cpus], mem)


def choose_gpus(
    free: list[int], count: int, distance: dict[tuple[int, int], int] | None
) -> tuple[int, ...]:
    """``count`` of the ``free`` GPUs: the closest set where the topology is known, else the lowest.

    Closest = the smallest largest pairwise distance, then the smallest sum, then the lowest ids.
    """
    if count <= 1 or not distance or count >= len(free):
        return tuple(free[:count])
    if math.comb(len(free), count) > MAX_COMBINATIONS:
        return tuple(free[:count])
    best = None
    for combo in itertools.combinations(free, count):
        pairs = [_distance(distance, a, b) for a, b in itertools.combinations(combo, 2)]
        rank = (max(pairs), sum(pairs), combo)
        if best is None or rank < best:
            best = rank
    return best[2]


def _distance(distance: dict[tuple[int, int], int], a: int, b: int) -> int:
    if (a, b) in distance:
        return distance[(a, b)]
    return distance.get((b, a), 1 << 20)  # an unknown pair counts as far apart
