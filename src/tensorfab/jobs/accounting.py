"""Job accounting: what each job used, summed by team or user (``tensorfab jobs report``).

Pure: records in, rows and text out; the only file it writes is the PNG, through the metrics
layer. The daemon turns its store's rows into :class:`JobUsage` records; everything here is
a function of those records and an explicit ``now``, so it is tested with hand-made records.

Times are Unix seconds (UTC). ``wait_s`` and ``run_s`` are the totals of the job's closed
intervals, as the store keeps them (a preempted job waits and runs more than once). A job
still running (``end_time`` None, ``start_time`` set) counts its open run up to ``now``; a
job waiting now counts its open wait up to ``now`` (from ``queued_time``, or from its
submission if it never started). So a report taken mid-run charges what has been used so
far, and the same report later only ever grows.

A job belongs to a report window ``[since, now]`` when it ended inside it or has not ended;
it is charged whole. The daily plot spreads each job's run over the days it covered.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from tensorfab.errors import TensorfabError
from tensorfab.metrics import format_metric, markdown_table, plot_stacked_bars

GROUPINGS = ("team", "user")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([dhm])")
_UNIT_S = {"d": 86400.0, "h": 3600.0, "m": 60.0}
_J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class JobUsage:
    """One job's resources and times, as accounting sees it."""

    id: int
    user: str
    team: str
    state: str  # queued | held | running | preempted | succeeded | failed | cancelled
    submit_time: float
    start_time: float | None  # start of the current (or last) run; None: never started
    end_time: float | None  # None while the job has not ended
    gpus: int
    cpus: int
    wait_s: float = 0.0  # closed waits: submit -> start, and requeue -> restart
    run_s: float = 0.0  # closed runs (ended, or stopped by preemption)
    energy_j: float | None = None  # NVML energy of the job's GPUs; None where unknown
    preemptions: int = 0
    retries: int = 0
    queued_time: float | None = None  # when a waiting job last entered the queue

    def run_seconds(self, now: float) -> float:
        """Seconds run so far: closed runs plus, while running, the open one up to ``now``."""
        if self.state == "running" and self.end_time is None and self.start_time is not None:
            return self.run_s + max(0.0, now - self.start_time)
        return self.run_s

    def wait_seconds(self, now: float) -> float:
        """Seconds waited: closed waits, plus the open wait of a job waiting now."""
        if self.end_time is not None or self.state == "running":
            return self.wait_s
        since = self.queued_time
        if since is None and self.start_time is None:
            since = self.submit_time
        return self.wait_s + (max(0.0, now - since) if since is not None else 0.0)

    def gpu_hours(self, now: float) -> float:
        return self.gpus * self.run_seconds(now) / 3600.0

    def cpu_hours(self, now: float) -> float:
        return self.cpus * self.run_seconds(now) / 3600.0


@dataclass(frozen=True)
class UsageRow:
    """One team's (or user's) sums over a report window."""

    key: str
    jobs: int
    gpu_hours: float
    cpu_hours: float
    energy_kwh: float | None  # over the jobs whose energy is known; None if none is
    energy_jobs: int  # how many jobs the energy covers
    mean_wait_s: float
    p95_wait_s: float
    preemptions: int
    retries: int
    failures: int


def parse_since(text: str, now: float) -> float:
    """``7d`` / ``12h`` / ``30m`` before ``now``, or an ISO date/time (UTC unless it says)."""
    value = text.strip()
    match = _DURATION.fullmatch(value)
    if match:
        return now - float(match.group(1)) * _UNIT_S[match.group(2)]
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise TensorfabError(
            f"--since {text!r}: expected a duration (7d, 12h, 30m) or an ISO date "
            "(2026-11-23 or 2026-11-23T08:00)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def in_window(job: JobUsage, since: float) -> bool:
    """The job ended at or after ``since``, or has not ended."""
    return job.end_time is None or job.end_time >= since


def p95(values: Sequence[float]) -> float:
    """The nearest-rank 95th percentile (the smallest value >= 95 % of them); 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def _row(key: str, jobs: list[JobUsage], now: float) -> UsageRow:
    waits = [j.wait_seconds(now) for j in jobs]
    known = [j.energy_j for j in jobs if j.energy_j is not None]
    return UsageRow(
        key=key,
        jobs=len(jobs),
        gpu_hours=sum(j.gpu_hours(now) for j in jobs),
        cpu_hours=sum(j.cpu_hours(now) for j in jobs),
        energy_kwh=sum(known) / _J_PER_KWH if known else None,
        energy_jobs=len(known),
        mean_wait_s=sum(waits) / len(waits),
        p95_wait_s=p95(waits),
        preemptions=sum(j.preemptions for j in jobs),
        retries=sum(j.retries for j in jobs),
        failures=sum(j.state == "failed" for j in jobs),
    )


def _group(records: Iterable[JobUsage], since: float, by: str) -> dict[str, list[JobUsage]]:
    if by not in GROUPINGS:
        raise TensorfabError(f"--by {by!r}: expected one of {', '.join(GROUPINGS)}")
    groups: dict[str, list[JobUsage]] = {}
    for job in records:
        if in_window(job, since):
            groups.setdefault(getattr(job, by), []).append(job)
    return groups


def summarize(
    records: Iterable[JobUsage], since: float, by: str = "team", now: float | None = None
) -> list[UsageRow]:
    """Rows per team (or user) of the jobs in ``[since, now]``, most GPU-hours first."""
    at = datetime.now(timezone.utc).timestamp() if now is None else now
    rows = [_row(key, jobs, at) for key, jobs in _group(records, since, by).items()]
    return sorted(rows, key=lambda r: (-r.gpu_hours, r.key))


def _hours(x: float) -> str:
    return f"{x:.2f}"


def to_markdown(rows: Sequence[UsageRow], by: str = "team") -> str:
    """The report as a markdown table (one line per team or user)."""
    header = [by, "jobs", "GPU-h", "CPU-h", "energy kWh", "mean wait s", "p95 wait s"]
    header += ["preemptions", "retries", "failures"]
    body = [
        [
            r.key,
            r.jobs,
            _hours(r.gpu_hours),
            _hours(r.cpu_hours),
            _energy(r),
            f"{r.mean_wait_s:.0f}",
            f"{r.p95_wait_s:.0f}",
            r.preemptions,
            r.retries,
            r.failures,
        ]
        for r in rows
    ]
    return "\n".join(markdown_table(header, body, "l" + "r" * 9)) + "\n"


def _energy(row: UsageRow) -> str:
    if row.energy_kwh is None:
        return format_metric(None)
    partial = "" if row.energy_jobs == row.jobs else f" ({row.energy_jobs}/{row.jobs} jobs)"
    return f"{row.energy_kwh:.3f}{partial}"


def to_csv(rows: Sequence[UsageRow]) -> str:
    """The rows as CSV with a header line (energy empty where unknown)."""
    out = io.StringIO()
    fields = list(UsageRow.__dataclass_fields__)
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in asdict(row).items()})
    return out.getvalue()


def to_json(rows: Sequence[UsageRow], by: str, since: float, now: float) -> str:
    """The rows as a JSON document that says what it covers."""
    doc = {
        "by": by,
        "since": _iso(since),
        "until": _iso(now),
        "rows": [asdict(r) for r in rows],
    }
    return json.dumps(doc, indent=2) + "\n"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def _day(t: float) -> date:
    return datetime.fromtimestamp(t, timezone.utc).date()


def _day_start(d: date) -> float:
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp()


def _spread(job: JobUsage, now: float, days: dict[date, float]) -> None:
    """Add the job's GPU-hours to ``days``, split over the UTC days its run covered.

    The run is taken as one span ending at ``end_time`` (or ``now``): exact for a job run
    once, and for a preempted one its hours still add up to :meth:`JobUsage.gpu_hours`.
    """
    run = job.run_seconds(now)
    if run <= 0 or job.gpus <= 0:
        return
    end = job.end_time if job.end_time is not None else now
    start = end - run
    d = _day(start)
    while _day_start(d) < end:
        lo, hi = max(start, _day_start(d)), min(end, _day_start(d + timedelta(days=1)))
        days[d] = days.get(d, 0.0) + job.gpus * max(0.0, hi - lo) / 3600.0
        d += timedelta(days=1)


def daily_gpu_hours(
    records: Iterable[JobUsage], since: float, now: float, by: str = "team"
) -> tuple[list[str], dict[str, list[float]]]:
    """(UTC days from ``since`` to ``now``, GPU-hours per team/user per day) for the plot."""
    first, last = _day(since), _day(now)
    labels = [str(first + timedelta(days=i)) for i in range((last - first).days + 1)]
    series: dict[str, list[float]] = {}
    for key, jobs in sorted(_group(records, since, by).items()):
        per_day: dict[date, float] = {}
        for job in jobs:
            _spread(job, now, per_day)
        series[key] = [per_day.get(date.fromisoformat(label), 0.0) for label in labels]
    return labels, series


def plot_usage(
    records: Iterable[JobUsage], since: float, now: float, path: Path, by: str = "team"
) -> Path:
    """A PNG of GPU-hours per day, one stacked segment per team (or user)."""
    labels, series = daily_gpu_hours(records, since, now, by)
    if not series:
        series = {"(no jobs)": [0.0] * len(labels)}
    return plot_stacked_bars(labels, series, path, "GPU-hours", f"GPU-hours per {by} per day")
