"""Job accounting: hand-computed sums by team and user, the window, writers, the daily plot."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tensorfab.errors import TensorfabError
from tensorfab.jobs.accounting import (
    JobUsage,
    daily_gpu_hours,
    p95,
    parse_since,
    plot_usage,
    summarize,
    to_csv,
    to_json,
    to_markdown,
)

H = 3600.0
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc).timestamp()
WEEK = NOW - 7 * 86400


def _job(id: int, user: str, team: str, state: str, **kw) -> JobUsage:
    defaults = {"submit_time": NOW - 10 * H, "start_time": None, "end_time": None}
    defaults.update({"gpus": 1, "cpus": 1})
    return JobUsage(id=id, user=user, team=team, state=state, **{**defaults, **kw})


JOBS = [
    # 2 GPUs x 4 h = 8 GPU-h, 4 CPUs x 4 h = 16 CPU-h, 3.6 MJ = 1 kWh
    _job(1, "alice", "vision", "succeeded", start_time=NOW - 9 * H, end_time=NOW - 5 * H,
         gpus=2, cpus=4, wait_s=H, run_s=4 * H, energy_j=3.6e6),
    # 1 GPU x 0.5 h; failed after one retry; energy unknown
    _job(2, "bob", "vision", "failed", start_time=NOW - 6 * H, end_time=NOW - 5.5 * H,
         cpus=2, wait_s=2 * H, run_s=0.5 * H, retries=1),
    # running: 0.5 h before a preemption + 2 h since its restart = 2.5 h x 4 GPUs = 10 GPU-h
    _job(3, "carol", "nlp", "running", start_time=NOW - 2 * H, gpus=4, cpus=8,
         wait_s=H, run_s=0.5 * H, preemptions=1),
    # queued for an hour so far: waits count up to now, nothing used yet
    _job(4, "dave", "nlp", "queued", submit_time=NOW - H, gpus=1),
    # across midnight: 22:00 -> 02:00, 4 GPU-h, half on each day; no wait
    _job(5, "carol", "nlp", "succeeded", submit_time=NOW - 14 * H, start_time=NOW - 14 * H,
         end_time=NOW - 10 * H, run_s=4 * H),
    # ended before the window: not in a 7-day report
    _job(6, "alice", "vision", "succeeded", submit_time=NOW - 9 * 86400,
         start_time=NOW - 9 * 86400, end_time=NOW - 8 * 86400, gpus=8, run_s=86400),
]  # fmt: skip


def test_job_usage_counts_a_running_job_up_to_now() -> None:
    running = JOBS[2]
    assert running.run_seconds(NOW) == 2.5 * H
    assert running.gpu_hours(NOW) == pytest.approx(10.0)
    assert running.cpu_hours(NOW) == pytest.approx(20.0)
    assert running.gpu_hours(NOW + H) == pytest.approx(14.0)  # an hour later: 4 more
    assert JOBS[0].gpu_hours(NOW + H) == pytest.approx(8.0)  # an ended job does not grow
    assert JOBS[3].wait_seconds(NOW) == H and JOBS[3].gpu_hours(NOW) == 0.0


def test_a_requeued_job_waits_again_from_its_requeue() -> None:
    # ran 1 h after waiting 0.5 h, preempted 2 h ago, back in the queue since then
    requeued = _job(7, "erin", "nlp", "preempted", start_time=NOW - 3 * H, gpus=2,
                    wait_s=0.5 * H, run_s=H, preemptions=1, queued_time=NOW - 2 * H)  # fmt: skip
    assert requeued.wait_seconds(NOW) == 2.5 * H
    assert requeued.run_seconds(NOW) == H and requeued.gpu_hours(NOW) == 2.0  # not running
    unknown = _job(8, "erin", "nlp", "preempted", start_time=NOW - 3 * H, wait_s=0.5 * H)
    assert unknown.wait_seconds(NOW) == 0.5 * H  # no requeue time given: closed waits only


def test_summarize_by_team_hand_computed() -> None:
    nlp, vision = summarize(JOBS, since=WEEK, by="team", now=NOW)
    # nlp: jobs 3, 4, 5 -> GPU-h 10 + 0 + 4, CPU-h 20 + 0 + 4; waits 1 h, 1 h, 0
    assert (nlp.key, nlp.jobs) == ("nlp", 3)
    assert nlp.gpu_hours == pytest.approx(14.0) and nlp.cpu_hours == pytest.approx(24.0)
    assert nlp.energy_kwh is None and nlp.energy_jobs == 0
    assert nlp.mean_wait_s == pytest.approx(2400.0) and nlp.p95_wait_s == H
    assert (nlp.preemptions, nlp.retries, nlp.failures) == (1, 0, 0)
    # vision: jobs 1, 2 (6 ended before the window) -> 8 + 0.5 GPU-h, 16 + 1 CPU-h
    assert (vision.key, vision.jobs) == ("vision", 2)
    assert vision.gpu_hours == pytest.approx(8.5) and vision.cpu_hours == pytest.approx(17.0)
    assert vision.energy_kwh == pytest.approx(1.0) and vision.energy_jobs == 1
    assert vision.mean_wait_s == pytest.approx(5400.0) and vision.p95_wait_s == 2 * H
    assert (vision.preemptions, vision.retries, vision.failures) == (0, 1, 1)


def test_summarize_by_user_and_window() -> None:
    rows = {r.key: r for r in summarize(JOBS, since=WEEK, by="user", now=NOW)}
    assert {k: round(r.gpu_hours, 6) for k, r in rows.items()} == {
        "carol": 14.0,
        "alice": 8.0,
        "bob": 0.5,
        "dave": 0.0,
    }
    assert list(rows) == ["carol", "alice", "bob", "dave"]  # most GPU-hours first
    # a 10-day window takes the old 8-GPU day of alice's too: 8 + 192
    alice = next(r for r in summarize(JOBS, NOW - 10 * 86400, "user", NOW) if r.key == "alice")
    assert alice.jobs == 2 and alice.gpu_hours == pytest.approx(200.0)
    assert summarize(JOBS, since=NOW + 1, by="team", now=NOW)[0].jobs == 2  # only unended ones


def test_summarize_refuses_an_unknown_grouping() -> None:
    with pytest.raises(TensorfabError, match=r"--by 'host': expected one of team, user"):
        summarize(JOBS, since=WEEK, by="host", now=NOW)


def test_p95_is_nearest_rank() -> None:
    assert p95([]) == 0.0
    assert p95([5.0]) == 5.0
    assert p95(list(range(1, 21))) == 19  # ceil(0.95 * 20) = 19th smallest
    assert p95(list(range(1, 101))) == 95
    assert p95([3.0, 1.0, 2.0]) == 3.0  # ceil(2.85) = 3rd


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", NOW - 7 * 86400),
        ("12h", NOW - 12 * H),
        ("30m", NOW - 1800),
        ("1.5h", NOW - 5400),
        ("2026-11-23", datetime(2026, 11, 23, tzinfo=timezone.utc).timestamp()),
        ("2026-11-23T08:00+01:00", datetime(2026, 11, 23, 7, tzinfo=timezone.utc).timestamp()),
    ],
)
def test_parse_since(text: str, expected: float) -> None:
    assert parse_since(text, NOW) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["7 days", "", "-3d", "yesterday", "2026-13-01"])
def test_parse_since_refuses_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(TensorfabError) as exc:
        parse_since(text, NOW)
    assert str(exc.value) == (
        f"--since {text!r}: expected a duration (7d, 12h, 30m) or an ISO date "
        "(2026-11-23 or 2026-11-23T08:00)"
    )


def test_markdown_table() -> None:
    rows = summarize(JOBS, since=WEEK, by="team", now=NOW)
    lines = to_markdown(rows, by="team").splitlines()
    assert lines[0] == (
        "| team | jobs | GPU-h | CPU-h | energy kWh | mean wait s | p95 wait s "
        "| preemptions | retries | failures |"
    )
    assert lines[1].startswith("| --- | ---: |")
    assert lines[2] == "| nlp | 3 | 14.00 | 24.00 | n/a | 2400 | 3600 | 1 | 0 | 0 |"
    assert lines[3] == "| vision | 2 | 8.50 | 17.00 | 1.000 (1/2 jobs) | 5400 | 7200 | 0 | 1 | 1 |"


def test_csv_and_json_round_trip() -> None:
    rows = summarize(JOBS, since=WEEK, by="team", now=NOW)
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert [r["key"] for r in parsed] == ["nlp", "vision"]
    assert parsed[0]["energy_kwh"] == "" and float(parsed[1]["energy_kwh"]) == pytest.approx(1.0)
    assert float(parsed[0]["gpu_hours"]) == pytest.approx(14.0)
    doc = json.loads(to_json(rows, "team", WEEK, NOW))
    assert doc["by"] == "team"
    assert (doc["since"], doc["until"]) == (
        "2026-11-23T12:00:00+00:00",
        "2026-11-30T12:00:00+00:00",
    )
    assert doc["rows"][1]["gpu_hours"] == pytest.approx(8.5)
    assert doc["rows"][0]["energy_kwh"] is None


def test_daily_gpu_hours_split_over_days() -> None:
    labels, series = daily_gpu_hours(JOBS, since=NOW - 2 * 86400, now=NOW, by="team")
    assert labels == ["2026-11-28", "2026-11-29", "2026-11-30"]
    # job 5 runs 22:00-02:00: 2 h on the 29th, 2 h on the 30th; job 3: 10 GPU-h on the 30th
    assert series["nlp"] == pytest.approx([0.0, 2.0, 12.0])
    assert series["vision"] == pytest.approx([0.0, 0.0, 8.5])
    # the days add up to the summary's GPU-hours for jobs inside the window
    total = sum(r.gpu_hours for r in summarize(JOBS, NOW - 2 * 86400, "team", NOW))
    assert sum(map(sum, series.values())) == pytest.approx(total)


def test_plot_usage_writes_a_png(tmp_path: Path) -> None:
    path = plot_usage(JOBS, since=WEEK, now=NOW, path=tmp_path / "usage.png", by="user")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert [p.name for p in tmp_path.iterdir()] == ["usage.png"]  # no temp file left
    empty = plot_usage([], since=WEEK, now=NOW, path=tmp_path / "empty.png")
    assert empty.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
