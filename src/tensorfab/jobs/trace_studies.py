"""Generate job traces from what GPU-cluster studies report: sizes, run times and daily arrivals.

The ``philly`` generator of :mod:`tensorfab.jobs.trace` (our reading of Philly's shape, Poisson
arrivals at a constant rate) made the committed ``philly-10k-load0.9`` trace. This one, the
``helios`` shape, takes each parameter from a published study, fixed before any policy was
replayed on it (docs/jobs-simulate.md has the table with the sources):

* Run time: log-normal with Helios's median and mean GPU-job run time (Hu et al., SC'21,
  1,580,464 GPU jobs of four clusters: median 206 s, mean 6,652 s; HeliosArtifact
  ``helios_cluster_summary.csv``), clipped to [1 s, the longest run in the Philly run-time
  sample Alibaba ships for comparison with PAI, 4,628,239 s = 53.6 days]; sigma (2.67) is solved
  so the clipped mean stays 6,652 s. Independent of the job's size: the studies report run time
  over all GPU jobs, and no size-to-run-time relation as numbers.
* GPUs per job: powers of two up to 128 (an eighth of a 1,024-GPU cluster; Philly buckets its
  jobs 1 / 2-4 / 5-8 / >8 GPUs, PAI reports gangs over 100 GPUs), median 1 and mean 3.75 GPUs
  (Helios: median 1, mean 3.72).
* Arrivals: batches of jobs (one user, one size: a sweep), Geometric with mean 2 jobs, arriving
  as a Poisson process whose rate follows the day (Helios and PAI both report a daily cycle of
  submissions, fewer at night): ``1 + 0.5 cos(2 pi (hour - 15) / 24)``, so the afternoon peak is
  three times the 3 a.m. trough, and weekends (days 5 and 6; the trace starts on a Monday at
  midnight) at 0.6 of a weekday. These numbers (and the batch mean) are our choice for
  findings the studies state, not values we could take from their data.
* Time limits, teams and priorities: as in the ``philly`` shape.

Like ``philly``, the jobs are drawn first and the arrival window is then set so that the trace's
own offered load (:func:`tensorfab.jobs.trace.offered_load`) is exactly the one asked for; the
batches' times are then drawn within it from the daily profile.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable

from tensorfab.errors import TensorfabError
from tensorfab.jobs.trace import (
    TraceJob,
    clipped_lognormal_mean,
    draw_owners,
    draw_time_limit,
    generate_trace,
)

HELIOS_MEDIAN_RUN_S = 206.0  # Helios GPU jobs, all four clusters (helios_cluster_summary.csv)
HELIOS_MEAN_RUN_S = 6652.0
SHORTEST_RUN_S = 1.0
LONGEST_RUN_S = 4_628_239.0  # the longest run in the Philly run-time sample (53.6 days)
GPU_COUNTS = (1, 2, 4, 8, 16, 32, 64, 128)
GPU_WEIGHTS = (0.65, 0.10, 0.10, 0.10, 0.03, 0.01, 0.006, 0.004)
BATCH_MEAN = 2.0  # jobs per submission (one user's sweep)
BATCH_GAP_S = 1.0  # between the jobs of one batch
PEAK_HOUR = 15.0
PEAK_TO_TROUGH = 3.0
WEEKEND_FACTOR = 0.6
DAY_S = 86_400.0
GRID_S = 60.0  # the daily profile is integrated minute by minute


def _solve_sigma() -> float:
    """The log-normal sigma whose clipped mean, at Helios's median, is Helios's mean."""
    lo, hi = 0.1, 5.0
    for _ in range(60):
        mid = (lo + hi) / 2
        mean = clipped_lognormal_mean(HELIOS_MEDIAN_RUN_S, mid, SHORTEST_RUN_S, LONGEST_RUN_S)
        lo, hi = (mid, hi) if mean < HELIOS_MEAN_RUN_S else (lo, mid)
    return (lo + hi) / 2


RUN_SIGMA = _solve_sigma()


def arrival_rate(t: float) -> float:
    """The relative submission rate ``t`` seconds after the trace starts (Monday, midnight)."""
    amplitude = (PEAK_TO_TROUGH - 1) / (PEAK_TO_TROUGH + 1)
    hour = (t % DAY_S) / 3600
    daily = 1 + amplitude * math.cos(2 * math.pi * (hour - PEAK_HOUR) / 24)
    weekend = int(t // DAY_S) % 7 >= 5
    return daily * (WEEKEND_FACTOR if weekend else 1.0)


def mean_gpu_seconds() -> float:
    """E[gpus * run time] of the distributions (independent, so the product of the means)."""
    gpus = sum(g * w for g, w in zip(GPU_COUNTS, GPU_WEIGHTS, strict=True))
    run = clipped_lognormal_mean(HELIOS_MEDIAN_RUN_S, RUN_SIGMA, SHORTEST_RUN_S, LONGEST_RUN_S)
    return gpus * run


def _draw_run_s(rng: random.Random) -> float:
    run = math.exp(rng.gauss(math.log(HELIOS_MEDIAN_RUN_S), RUN_SIGMA))
    return float(max(SHORTEST_RUN_S, min(LONGEST_RUN_S, round(run))))


def _draw_batches(rng: random.Random, count: int) -> list[list[tuple]]:
    """``count`` jobs in batches: each job (gpus, run s, limit s, team, user, priority)."""
    owners = draw_owners(rng)
    batches, drawn = [], 0
    while drawn < count:
        size = min(count - drawn, 1 + _geometric(rng, BATCH_MEAN - 1))
        gpus = rng.choices(GPU_COUNTS, GPU_WEIGHTS)[0]
        team, user, priority = next(owners)
        jobs = []
        for _ in range(size):
            run = _draw_run_s(rng)
            jobs.append((gpus, run, draw_time_limit(rng, run), team, user, priority))
        batches.append(jobs)
        drawn += size
    return batches


def _geometric(rng: random.Random, mean: float) -> int:
    """A count >= 0 with the given mean (failures before a success of probability 1/(1+mean))."""
    if mean <= 0:
        return 0
    return int(math.log(1.0 - rng.random()) / math.log(mean / (1 + mean)))


def _batch_times(rng: random.Random, batches: int, window_s: float) -> list[float]:
    """Sorted batch submit times in [0, window]: the first at 0, the last at the end, and the
    rest drawn from :func:`arrival_rate` (a Poisson process given its count is i.i.d. points
    with density proportional to its rate)."""
    if batches == 1:
        return [0.0]
    steps = max(1, math.ceil(window_s / GRID_S))
    step = window_s / steps
    cumulative = [0.0]
    for i in range(steps):
        cumulative.append(cumulative[-1] + arrival_rate((i + 0.5) * step) * step)
    inner = []
    for _ in range(batches - 2):
        u = rng.random() * cumulative[-1]
        i = max(0, bisect.bisect_right(cumulative, u) - 1)
        inner.append((i + (u - cumulative[i]) / (cumulative[i + 1] - cumulative[i])) * step)
    return [0.0, *sorted(inner), window_s]


def generate_helios_trace(count: int, seed: int, load: float, cluster_gpus: int) -> list[TraceJob]:
    """``count`` jobs shaped by the studies whose arrivals offer exactly ``load`` to the cluster."""
    if count < 1 or not load > 0 or cluster_gpus < 1:
        raise TensorfabError("--generate needs N >= 1, --load > 0 and --gpus >= 1")
    rng = random.Random(seed)
    batches = _draw_batches(rng, count)
    work = sum(gpus * run for batch in batches for gpus, run, *_ in batch)
    last_batch = (len(batches[-1]) - 1) * BATCH_GAP_S  # the last job ends the window
    window = max(work / (load * cluster_gpus) - last_batch, 0.0)
    jobs = []
    for start, batch in zip(_batch_times(rng, len(batches), window), batches, strict=True):
        for i, (gpus, run, limit, team, user, priority) in enumerate(batch):
            at = round(start + i * BATCH_GAP_S, 3)
            jobs.append(TraceJob(at, gpus, run, limit, priority, team, user))
    jobs.sort(key=lambda j: j.submit_time)
    return jobs


GENERATORS: dict[str, Callable[[int, int, float, int], list[TraceJob]]] = {
    "helios": generate_helios_trace,
    "philly": generate_trace,
}
