"""Trace files (round trip, errors naming file:line), the generator, and the simulate command."""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import math
from collections import Counter
from pathlib import Path

import pytest

from tensorfab.cli import jobs_simulate
from tensorfab.errors import TensorfabError
from tensorfab.jobs.trace import (
    GPU_COUNTS,
    GPU_WEIGHTS,
    TraceJob,
    generate_trace,
    load_trace,
    mean_gpu_seconds,
    offered_load,
    save_trace,
    steady_window,
    warmup_s,
    window_load,
)


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    jobs_simulate.configure(parser)
    return jobs_simulate.run(parser.parse_args(list(argv)))


def test_round_trip_plain_and_gzip(tmp_path):
    jobs = [
        TraceJob(0.0, 1, 60.0, 120.0, 4, "t0", "t0-u0"),
        TraceJob(5.5, 8, 3600.0, math.inf, 7, "t1", "t1-u1", preemptible=False, cpus=16),
    ]
    for name in ("t.jsonl", "t.jsonl.gz"):
        save_trace(jobs, tmp_path / name)
        assert load_trace(tmp_path / name) == jobs
    with gzip.open(tmp_path / "t.jsonl.gz", "rt") as f:
        assert json.loads(f.readline())["gpus"] == 1
    save_trace(jobs, tmp_path / "again.jsonl.gz")  # gzip without a timestamp: same bytes
    assert (tmp_path / "again.jsonl.gz").read_bytes() == (tmp_path / "t.jsonl.gz").read_bytes()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "t.jsonl:2: not JSON"),
        ("[1, 2]", "t.jsonl:2: expected a JSON object"),
        ('{"gpus": 1}', "t.jsonl:2: missing submit_time, duration_s"),
        ('{"submit_time": 0, "gpus": "x", "duration_s": 1}', "t.jsonl:2: invalid literal"),
        ('{"submit_time": 0, "gpus": 1, "duration_s": 1, "priority": 12}', "priority must be 0..9"),
        ('{"submit_time": 0, "gpus": -1, "duration_s": 1}', "t.jsonl:2: gpus, duration_s"),
        ('{"submit_time": 0, "gpus": 1, "duration_s": 1, "time_limit_s": 0}', "time_limit_s"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "t.jsonl"
    path.write_text('{"submit_time": 0, "gpus": 1, "duration_s": 1}\n' + line + "\n")
    with pytest.raises(TensorfabError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_trace(path)


def test_missing_and_empty_trace(tmp_path):
    with pytest.raises(TensorfabError, match="no such trace file"):
        load_trace(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(TensorfabError, match="the trace has no jobs"):
        load_trace(tmp_path / "empty.jsonl")


def test_generator_is_seeded_and_philly_shaped():
    a = generate_trace(3000, seed=3, load=0.9, cluster_gpus=1024)
    assert a == generate_trace(3000, seed=3, load=0.9, cluster_gpus=1024)
    assert a != generate_trace(3000, seed=4, load=0.9, cluster_gpus=1024)
    counts = Counter(j.gpus for j in a)
    for gpus, weight in zip(GPU_COUNTS, GPU_WEIGHTS, strict=True):
        assert abs(counts[gpus] / len(a) - weight) < 0.03, (gpus, counts[gpus])
    durations = sorted(j.duration_s for j in a if j.gpus == 1)
    median = durations[len(durations) // 2]
    assert 15 * 60 < median < 26 * 60  # log-normal, median 20 minutes for 1 GPU
    assert all(j.time_limit_s >= j.duration_s and j.time_limit_s % 300 == 0 for j in a)
    # arrivals: Poisson, so the gaps are exponential (their std is about their mean)
    gaps = [b.submit_time - x.submit_time for x, b in itertools.pairwise(a)]
    mean = sum(gaps) / len(gaps)
    std = (sum((g - mean) ** 2 for g in gaps) / len(gaps)) ** 0.5
    assert std == pytest.approx(mean, rel=0.1)


@pytest.mark.parametrize(
    ("count", "seed", "load", "gpus"), [(3000, 3, 0.9, 1024), (200, 5, 0.5, 64)]
)
def test_generated_trace_offers_the_requested_load(count, seed, load, gpus):
    jobs = generate_trace(count, seed=seed, load=load, cluster_gpus=gpus)
    assert offered_load(jobs, gpus) == pytest.approx(load, rel=0.01)
    # the sample's own work sets the window, not the expected work: a heavy-tailed sample
    # differs from the mean, and the arrivals follow the sample
    work = sum(j.gpus * j.duration_s for j in jobs)
    window = jobs[-1].submit_time - jobs[0].submit_time
    assert window == pytest.approx(work / (load * gpus), rel=1e-6)


def test_offered_load_by_hand():
    job = TraceJob(0.0, 2, 100.0, 200.0, 4, "t", "u")
    later = TraceJob(50.0, 4, 25.0, 200.0, 4, "t", "u")
    # (2 * 100 + 4 * 25) GPU-s over 10 GPUs x 50 s
    assert offered_load([job, later], 10) == pytest.approx(0.6)
    # inside the window 0..50: the first job runs 50 of its 100 s, the second none
    assert window_load([job, later], 10) == pytest.approx(2 * 50 / (10 * 50))
    # in 25..75: the first job's 2 GPUs for 50 s, the second's 4 GPUs for all its 25 s
    assert window_load([job, later], 10, (25.0, 75.0)) == pytest.approx((100 + 100) / (10 * 50))
    with pytest.raises(TensorfabError, match="end after its start"):
        window_load([job, later], 10, (75.0, 25.0))
    with pytest.raises(TensorfabError, match="two different times"):
        offered_load([job], 10)


def test_warmup_by_hand():
    short = TraceJob(0.0, 1, 100.0, 200.0, 4, "t", "u")
    long = TraceJob(10.0, 1, 300.0, 400.0, 4, "t", "u")
    wide = TraceJob(20.0, 2, 100.0, 200.0, 4, "t", "u")
    # 400 GPU-s in all; from an empty cluster both jobs run until t=100: 2 GPU-s a second
    assert warmup_s([short, long], 0.5) == pytest.approx(100)
    # then only the long one: 200 + (t - 100) = 300 at t = 200
    assert warmup_s([short, long], 0.75) == pytest.approx(200)
    assert warmup_s([short, long], 1.0) == pytest.approx(300)
    # GPUs weigh the run time: 600 GPU-s, 4 GPUs busy until t=100 (400), then 1
    assert warmup_s([short, long, wide], 0.5) == pytest.approx(75)
    assert warmup_s([short, long, wide], 5 / 6) == pytest.approx(200)
    with pytest.raises(TensorfabError, match="steady fraction must be in"):
        warmup_s([short], 0)


def test_steady_window_skips_the_warm_up_and_the_last_tenth():
    jobs = [TraceJob(float(t), 1, 50.0, 100.0, 4, "t", "u") for t in range(0, 1001, 10)]
    # every job runs 50 s: 95 % of the way at t = 47.5; the last 10 % of 1000 s is cut
    assert steady_window(jobs) == pytest.approx((47.5, 900.0))
    assert steady_window(jobs, cooldown_share=0.0) == pytest.approx((47.5, 1000.0))


def test_committed_trace_offers_load_0_9_on_1024_gpus():
    path = Path(__file__).parents[3] / "benchmarks/traces/philly-10k-load0.9.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:  # plain JSON: load_trace is 2x slower
        rows = [json.loads(line) for line in f]
    assert len(rows) == 10000
    times = [r["submit_time"] for r in rows]
    work = sum(r["gpus"] * r["duration_s"] for r in rows)
    assert work / (1024 * (max(times) - min(times))) == pytest.approx(0.9, rel=0.01)
    # the GPUs left idle while jobs arrive are the warm-up of a trace that starts on an empty
    # cluster: had no job waited, 78 % busy over all the arrivals, but close to the 0.9 offered
    # once the cluster is warm (docs/jobs-simulate.md: "Is the committed trace at load 0.9?")
    jobs = [TraceJob(**r) for r in rows]
    assert window_load(jobs, 1024) < 0.8
    assert window_load(jobs, 1024, steady_window(jobs)) == pytest.approx(0.9, abs=0.03)


def test_mean_gpu_seconds_matches_a_large_sample():
    jobs = generate_trace(20000, seed=7, load=1.0, cluster_gpus=1024)
    sample = sum(j.gpus * j.duration_s for j in jobs) / len(jobs)
    assert sample == pytest.approx(mean_gpu_seconds(), rel=0.1)  # heavy tail: a loose bound


def test_cli_generates_then_replays(tmp_path, capsys):
    out = tmp_path / "trace.jsonl.gz"
    assert (
        run_cli(
            "--generate", "60", "--seed", "1", "--load", "0.5", "--gpus", "64", "--out", str(out)
        )
        == 0
    )
    said = capsys.readouterr().out
    assert "60 jobs" in said and "offered load 0.500 on 64 GPUs" in said  # measured on the trace
    assert len(load_trace(out)) == 60
    assert run_cli(str(out), "--gpus", "64", "--policy", "fair", "--backfill", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["jobs"] == 60 and report["succeeded"] == 60 and report["backfill"] is True
    assert 0 < report["utilisation"] <= 1
    assert run_cli(str(out), "--gpus", "64", "--policy", "fifo") == 0
    text = capsys.readouterr().out
    assert text.startswith("fifo on 64 GPUs (8 per node): 60/60 jobs succeeded")


def test_cli_steady_reports_the_jobs_of_the_steady_window(tmp_path, capsys):
    out = tmp_path / "trace.jsonl"
    jobs = generate_trace(300, seed=2, load=0.8, cluster_gpus=32)
    save_trace(jobs, out)
    lo, hi = steady_window(jobs)
    inside = [j for j in jobs if lo <= j.submit_time <= hi]
    assert run_cli(str(out), "--gpus", "32", "--policy", "fifo", "--steady", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    steady = report["steady"]
    assert (steady["from_s"], steady["to_s"], steady["jobs"]) == (lo, hi, len(inside))
    assert 0 < steady["jobs"] < 300 and 0 < steady["utilisation"] <= 1
    line = jobs_simulate.format_report(report).splitlines()[-2]
    assert line.startswith(f"  steady state ({len(inside)} jobs submitted {lo / 3600:.1f}-")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give a TRACE file to replay, or --generate N --out FILE"),
        (["--generate", "10"], "--generate needs --out FILE"),
        (["x.jsonl", "--share", "a"], "--share 'a': give TEAM=NUMBER"),
        (["x.jsonl", "--quota", "a=-1"], "--quota 'a=-1': give TEAM=NUMBER"),
        (["x.jsonl", "--grace-s", "0"], "--grace-s must be > 0"),
    ],
)
def test_cli_errors(argv, message):
    with pytest.raises(TensorfabError, match=message.replace("(", r"\(")):
        run_cli(*argv)


def test_cli_steady_refuses_a_trace_too_short_for_a_steady_state(tmp_path):
    path = tmp_path / "t.jsonl"
    # 2 hours of arrivals; the 10-hour job alone makes the warm-up longer than that
    save_trace(
        [
            TraceJob(0.0, 1, 36000.0, 36000.0, 4, "a", "u"),
            TraceJob(7200.0, 1, 60.0, 120.0, 4, "a", "u"),
        ],
        path,
    )
    with pytest.raises(
        TensorfabError,
        match=r"--steady: the trace's 2.0 h of arrivals end before its warm-up \(9.5 h\)",
    ):
        run_cli(str(path), "--gpus", "8", "--steady")


def test_cli_names_the_trace_of_a_job_that_never_fits(tmp_path):
    path = tmp_path / "t.jsonl"
    save_trace([TraceJob(0.0, 16, 60.0, 120.0, 4, "a", "u")], path)
    with pytest.raises(TensorfabError, match=r"t.jsonl: trace job 1 .*asks for 16 GPUs"):
        run_cli(str(path), "--gpus", "8")


def test_cli_help_has_example_and_defaults():
    parser = argparse.ArgumentParser(epilog=jobs_simulate.EXAMPLE)
    jobs_simulate.configure(parser)
    text = parser.format_help()
    assert "--generate N" in text and "--backfill" in text
    assert "tensorfab jobs simulate --generate" in jobs_simulate.EXAMPLE


def test_progress_shows_count_and_eta_after_a_few_seconds(monkeypatch, capsys):
    clock = iter([100.0, 101.0, 110.0])  # start, a quick update (silent), one 10 s in
    monkeypatch.setattr(jobs_simulate.time, "monotonic", lambda: next(clock))
    show = jobs_simulate._progress()
    show(100, 1000)
    assert capsys.readouterr().err == ""
    show(250, 1000)
    assert capsys.readouterr().err == "  250/1000 jobs ended, ETA 30 s\n"
