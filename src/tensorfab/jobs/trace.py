"""Job traces for the simulator: read and write JSON lines, and generate Philly-shaped ones.

A trace is one JSON object per line (``.jsonl``, or ``.jsonl.gz``)::

    {"submit_time": 12.5, "gpus": 4, "duration_s": 3600, "time_limit_s": 5400,
     "priority": 4, "team": "t1", "user": "t1-u0"}

``preemptible`` (default true: simulated jobs are resumable training) and ``cpus`` (default
4 per GPU, at least 1) are optional.

The generator follows the workload that Jeon et al. describe for Microsoft's Philly cluster
("Analysis of Large-Scale Multi-Tenant GPU Clusters for DNN Training Workloads", USENIX ATC
2019): most jobs ask for one GPU, a few for a whole 8-GPU server or more; run times are
heavy-tailed, from minutes to days, and bigger jobs run longer. The parameters below are our
reading of that shape, not a fit to the raw trace (which this repository does not carry):

* GPUs per job: 1 (70 %), 2 (10 %), 4 (10 %), 8 (6 %), 16 (3 %), 32 (1 %): single-GPU jobs
  dominate the count while the rare 8+ GPU jobs hold a large part of the GPU time, as in Philly.
* Run time: log-normal, median 20 minutes for a 1-GPU job times ``gpus ** 0.3`` (larger jobs run
  longer), sigma 1.6 (heavy tail: the top 5 % run about 14x the median), capped at 7 days.
* Time limit: what a user asks for, the run time times ``1 + Exp(mean 0.5)`` rounded up to
  5 minutes: always enough, rarely tight, as backfilling schedulers see it.
* Arrivals: a Poisson process (exponential gaps) scaled so that the trace's own offered load
  is the requested one. The offered load of a trace is a property of its jobs
  (:func:`offered_load`): their GPU-seconds over the cluster's GPU-seconds in the arrival
  window, first to last submit, ``sum(gpus * duration) / (cluster_gpus * window)``. That is
  queueing theory's ``rho = lambda * E[S] / c`` with the arrival rate and the mean work
  measured on the trace itself (``lambda = n / window``, ``E[S] = sum / n``) rather than taken
  from the distributions. So the generator draws the jobs first and then stretches the
  arrival window to fit. (With heavy tails a sample's mean work is far from the expected
  one, :func:`mean_gpu_seconds`: a rate set from the expectation gave a 10,000-job sample
  an offered load of 0.83 when 0.9 was asked.)
* Teams: 8, with Zipf-like sizes (Philly's virtual clusters differ a lot in size), 4 users
  each; priority classes: normal (4) 80 %, high (7) 10 %, low (2) 10 %.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from tensorfab.errors import TensorfabError
from tensorfab.files import atomic_path

GPU_COUNTS = (1, 2, 4, 8, 16, 32)
GPU_WEIGHTS = (0.70, 0.10, 0.10, 0.06, 0.03, 0.01)
MEDIAN_S = 20 * 60.0
SIZE_EXPONENT = 0.3
SIGMA = 1.6
MAX_DURATION_S = 7 * 24 * 3600.0
LIMIT_SLACK_MEAN = 0.5
LIMIT_ROUND_S = 300.0
TEAMS = 8
USERS_PER_TEAM = 4
PRIORITIES = ((4, 0.8), (7, 0.1), (2, 0.1))
CPUS_PER_GPU = 4


@dataclass(frozen=True)
class TraceJob:
    """One job of a trace."""

    submit_time: float
    gpus: int
    duration_s: float
    time_limit_s: float
    priority: int
    team: str
    user: str
    preemptible: bool = True
    cpus: int | None = None  # None: CPUS_PER_GPU per GPU, at least 1

    @property
    def cores(self) -> int:
        return self.cpus if self.cpus is not None else max(1, CPUS_PER_GPU * self.gpus)


def _open_text(path: Path, mode: str) -> io.TextIOBase:
    if path.name.endswith(".gz"):
        return gzip.open(path, mode + "t", encoding="utf-8")
    return open(path, mode, encoding="utf-8")


def load_trace(path: Path) -> list[TraceJob]:
    """The jobs of a trace file, by submit time; a bad line is an error naming file:line."""
    path = Path(path)
    if not path.is_file():
        raise TensorfabError(f"{path}: no such trace file")
    jobs = []
    try:
        with _open_text(path, "r") as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    jobs.append(parse_job(line, f"{path}:{lineno}"))
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise TensorfabError(f"{path}: cannot read the trace ({exc})") from None
    if not jobs:
        raise TensorfabError(f"{path}: the trace has no jobs")
    jobs.sort(key=lambda j: j.submit_time)
    return jobs


REQUIRED = ("submit_time", "gpus", "duration_s")


def parse_job(line: str, where: str) -> TraceJob:
    """One trace line as a job; ``where`` (file:line) names the place in errors."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TensorfabError(f"{where}: not JSON ({exc.msg})") from None
    if not isinstance(raw, dict):
        raise TensorfabError(f"{where}: expected a JSON object")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise TensorfabError(f"{where}: missing {', '.join(missing)}")
    try:
        job = TraceJob(
            submit_time=float(raw["submit_time"]),
            gpus=int(raw["gpus"]),
            duration_s=float(raw["duration_s"]),
            time_limit_s=float(raw.get("time_limit_s", math.inf)),
            priority=int(raw.get("priority", 4)),
            team=str(raw.get("team", "default")),
            user=str(raw.get("user", "user")),
            preemptible=bool(raw.get("preemptible", True)),
            cpus=None if raw.get("cpus") is None else int(raw["cpus"]),
        )
    except (TypeError, ValueError) as exc:
        raise TensorfabError(f"{where}: {exc}") from None
    _check(job, where)
    return job


def _check(job: TraceJob, where: str) -> None:
    if job.gpus < 0 or job.duration_s < 0 or job.submit_time < 0:
        raise TensorfabError(f"{where}: gpus, duration_s and submit_time must be >= 0")
    if not job.time_limit_s > 0:
        raise TensorfabError(f"{where}: time_limit_s must be > 0")
    if not 0 <= job.priority <= 9:
        raise TensorfabError(f"{where}: priority must be 0..9, got {job.priority}")
    if job.cpus is not None and job.cpus < 1:
        raise TensorfabError(f"{where}: cpus must be >= 1")


def save_trace(jobs: list[TraceJob], path: Path) -> None:
    """Write ``jobs`` as JSON lines (gzip when the name ends in .gz), atomically."""
    path = Path(path)
    lines = "".join(json.dumps(_row(j), separators=(",", ":")) + "\n" for j in jobs)
    with atomic_path(path) as tmp:
        if path.name.endswith(".gz"):
            # mtime=0: the same trace gives the same bytes
            with (
                open(tmp, "wb") as raw,
                gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz,
            ):
                gz.write(lines.encode("utf-8"))
        else:
            tmp.write_text(lines, encoding="utf-8")


def _row(job: TraceJob) -> dict:
    row = asdict(job)
    if row["cpus"] is None:
        del row["cpus"]
    if row["preemptible"]:
        del row["preemptible"]
    return row


def _draw(rng: random.Random) -> tuple[int, float, float]:
    gpus = rng.choices(GPU_COUNTS, GPU_WEIGHTS)[0]
    median = MEDIAN_S * gpus**SIZE_EXPONENT
    duration = min(MAX_DURATION_S, math.exp(rng.gauss(math.log(median), SIGMA)))
    duration = max(60.0, round(duration))
    return gpus, duration, draw_time_limit(rng, duration)


def draw_time_limit(rng: random.Random, duration_s: float) -> float:
    """What a user asks for: the run time times ``1 + Exp(mean 0.5)``, rounded up to 5 minutes."""
    slack = 1.0 + rng.expovariate(1.0 / LIMIT_SLACK_MEAN)
    return math.ceil(duration_s * slack / LIMIT_ROUND_S) * LIMIT_ROUND_S


def mean_gpu_seconds() -> float:
    """E[gpus * duration] of the generator's distributions, in closed form.

    The run time is a log-normal clipped to [60 s, MAX_DURATION_S]; for ``X`` log-normal
    (mu, sigma), ``E[X; a < X < b] = exp(mu + sigma^2 / 2) * (Phi(B) - Phi(A))`` with
    ``A, B = (ln a - mu - sigma^2) / sigma, (ln b - mu - sigma^2) / sigma``. (Rounding to whole
    seconds is left out: it moves the mean by far less than a second.)
    """
    return sum(
        weight * gpus * clipped_lognormal_mean(median, SIGMA, 60.0, MAX_DURATION_S)
        for gpus, weight in zip(GPU_COUNTS, GPU_WEIGHTS, strict=True)
        for median in [MEDIAN_S * gpus**SIZE_EXPONENT]
    )


def clipped_lognormal_mean(median: float, sigma: float, lo: float, hi: float) -> float:
    """``E[min(max(X, lo), hi)]`` for ``X`` log-normal with this median and sigma (closed form)."""
    mu, s = math.log(median), sigma
    below, above = _phi((math.log(lo) - mu) / s), 1 - _phi((math.log(hi) - mu) / s)
    inside = math.exp(mu + s * s / 2) * (
        _phi((math.log(hi) - mu - s * s) / s) - _phi((math.log(lo) - mu - s * s) / s)
    )
    return lo * below + inside + hi * above


def _phi(x: float) -> float:
    """The standard normal CDF."""
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def draw_owners(rng: random.Random) -> Iterator[tuple[str, str, int]]:
    """Endless (team, user, priority) triples: 8 teams of Zipf-like sizes, 4 users each."""
    weights = [1.0 / (i + 1) for i in range(TEAMS)]  # Zipf-like team sizes
    prios, prio_weights = zip(*PRIORITIES, strict=False)
    while True:
        t = rng.choices(range(TEAMS), weights)[0]
        user = f"t{t}-u{rng.randrange(USERS_PER_TEAM)}"
        yield f"t{t}", user, rng.choices(prios, prio_weights)[0]


def offered_load(jobs: list[TraceJob], cluster_gpus: int) -> float:
    """The jobs' GPU-seconds over ``cluster_gpus`` x the arrival window, first to last submit."""
    if not jobs or cluster_gpus < 1:
        raise TensorfabError("offered load needs jobs and a cluster of >= 1 GPU")
    times = [j.submit_time for j in jobs]
    window = max(times) - min(times)
    if not window > 0:
        raise TensorfabError("offered load needs jobs submitted at two different times at least")
    return sum(j.gpus * j.duration_s for j in jobs) / (cluster_gpus * window)


def window_load(
    jobs: list[TraceJob], cluster_gpus: int, window: tuple[float, float] | None = None
) -> float:
    """The share of the cluster the jobs would keep busy during ``window`` if none waited.

    ``window`` defaults to the arrival window, first to last submit: each job counts only the
    part of its run that falls inside it, so this is the most the cluster can be busy while
    jobs arrive. Below :func:`offered_load` when the trace starts on an empty cluster and
    long jobs run on after the window (see :func:`warmup_s`); over :func:`steady_window`, close
    to it.
    """
    offered_load(jobs, cluster_gpus)  # the same checks
    lo, hi = window or (min(j.submit_time for j in jobs), max(j.submit_time for j in jobs))
    if not hi > lo:
        raise TensorfabError("a load window needs its end after its start")
    inside = sum(
        j.gpus * max(0.0, min(j.submit_time + j.duration_s, hi) - max(j.submit_time, lo))
        for j in jobs
    )
    return inside / (cluster_gpus * (hi - lo))


STEADY_FRACTION = 0.95
COOLDOWN_SHARE = 0.10


def warmup_s(jobs: list[TraceJob], fraction: float = STEADY_FRACTION) -> float:
    """Seconds from the first submit until the cluster is ``fraction`` of the way to its load.

    Jobs arriving at a steady rate into an empty cluster, none waiting, keep
    ``rate * E[gpus * min(duration, t)]`` GPUs busy at time ``t`` (a job that arrived ``s``
    ago still runs if its run time exceeds ``s``); the steady state is ``rate * E[gpus *
    duration]``. This is the smallest ``t`` with ``sum(gpus * min(duration, t)) >= fraction *
    sum(gpus * duration)`` over the trace's own jobs: the warm-up a finite trace that starts
    on an empty cluster needs before it offers its load. A property of the run times alone,
    the same for every policy.
    """
    if not 0 < fraction <= 1:
        raise TensorfabError(f"the steady fraction must be in (0, 1], got {fraction}")
    ordered = sorted((j.duration_s, j.gpus) for j in jobs)
    target = fraction * sum(d * g for d, g in ordered)
    if not target > 0:
        return 0.0
    done, wider = 0.0, sum(g for _, g in ordered)  # GPU-s of shorter jobs; GPUs of longer
    for duration, gpus in ordered:
        if wider and done + wider * duration >= target:
            return (target - done) / wider
        done, wider = done + gpus * duration, wider - gpus
    return ordered[-1][0] if ordered else 0.0


def steady_window(
    jobs: list[TraceJob], cooldown_share: float = COOLDOWN_SHARE
) -> tuple[float, float]:
    """The submit times whose jobs see the trace's steady state: after :func:`warmup_s`, and
    ``cooldown_share`` of the arrival window before the last submit (so the measured jobs do
    their waiting while later jobs still arrive). Empty (from > to) for a trace too short."""
    first = min(j.submit_time for j in jobs)
    last = max(j.submit_time for j in jobs)
    return first + warmup_s(jobs), last - cooldown_share * (last - first)


def generate_trace(count: int, seed: int, load: float, cluster_gpus: int) -> list[TraceJob]:
    """``count`` Philly-shaped jobs whose arrivals offer exactly ``load`` to the cluster.

    The jobs are drawn first; the Poisson arrival times are then scaled so that
    :func:`offered_load` of the trace is ``load`` (up to the millisecond rounding of the times).
    """
    if count < 1 or not load > 0 or cluster_gpus < 1:
        raise TensorfabError("--generate needs N >= 1, --load > 0 and --gpus >= 1")
    rng = random.Random(seed)
    who = draw_owners(rng)
    drawn, clock, arrivals = [], 0.0, []
    for _ in range(count):
        clock += rng.expovariate(1.0)  # unit-rate gaps, scaled below
        arrivals.append(clock)
        gpus, duration, limit = _draw(rng)
        drawn.append((gpus, duration, limit, *next(who)))
    work = sum(gpus * duration for gpus, duration, *_ in drawn)
    window = arrivals[-1] - arrivals[0]
    scale = work / (load * cluster_gpus * window) if window > 0 else 1.0
    return [
        TraceJob(round(t * scale, 3), gpus, duration, limit, priority, team, user)
        for t, (gpus, duration, limit, team, user, priority) in zip(arrivals, drawn, strict=True)
    ]
