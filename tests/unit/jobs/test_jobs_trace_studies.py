"""The study-shaped trace generator (--shape helios): its distributions, arrivals and load."""

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
    TraceJob,
    clipped_lognormal_mean,
    generate_trace,
    load_trace,
    offered_load,
)
from tensorfab.jobs.trace_studies import (
    DAY_S,
    GPU_COUNTS,
    GPU_WEIGHTS,
    HELIOS_MEAN_RUN_S,
    HELIOS_MEDIAN_RUN_S,
    LONGEST_RUN_S,
    RUN_SIGMA,
    SHORTEST_RUN_S,
    arrival_rate,
    generate_helios_trace,
)

COMMITTED = Path(__file__).parents[3] / "benchmarks/traces/helios-10k-load0.9.jsonl.gz"


@pytest.fixture(scope="module")
def jobs() -> list[TraceJob]:
    return generate_helios_trace(4000, seed=3, load=0.9, cluster_gpus=1024)


def test_clipped_lognormal_mean_by_hand():
    # no clipping: the log-normal mean exp(mu + sigma^2 / 2)
    assert clipped_lognormal_mean(100.0, 1.0, 1e-12, 1e12) == pytest.approx(100 * math.exp(0.5))
    # everything clipped to one side
    assert clipped_lognormal_mean(100.0, 0.5, 1e6, 2e6) == pytest.approx(1e6)
    assert clipped_lognormal_mean(100.0, 0.5, 1e-6, 1e-3) == pytest.approx(1e-3)


def test_run_time_has_helios_median_and_mean():
    # sigma is solved so the clipped distribution keeps Helios's mean at Helios's median
    mean = clipped_lognormal_mean(HELIOS_MEDIAN_RUN_S, RUN_SIGMA, SHORTEST_RUN_S, LONGEST_RUN_S)
    assert mean == pytest.approx(HELIOS_MEAN_RUN_S, rel=1e-6)
    assert 2.6 < RUN_SIGMA < 2.7


def test_sizes_and_run_times_follow_the_tables(jobs):
    assert sum(GPU_WEIGHTS) == pytest.approx(1.0)
    assert sum(g * w for g, w in zip(GPU_COUNTS, GPU_WEIGHTS, strict=True)) == pytest.approx(
        3.72, abs=0.05
    )  # Helios: mean 3.72 GPUs a GPU job, median 1
    counts = Counter(j.gpus for j in jobs)
    for gpus, weight in zip(GPU_COUNTS, GPU_WEIGHTS, strict=True):
        assert abs(counts[gpus] / len(jobs) - weight) < 0.03, (gpus, counts[gpus])
    runs = sorted(j.duration_s for j in jobs)
    assert 170 < runs[len(runs) // 2] < 250  # median 206 s
    assert runs[0] >= SHORTEST_RUN_S and runs[-1] <= LONGEST_RUN_S
    assert all(j.time_limit_s >= j.duration_s and j.time_limit_s % 300 == 0 for j in jobs)


def test_arrival_rate_by_hand():
    assert arrival_rate(15 * 3600) == pytest.approx(1.5)  # Monday 15:00: the peak
    assert arrival_rate(3 * 3600) == pytest.approx(0.5)  # 03:00: the trough, a third of it
    assert arrival_rate(9 * 3600) == pytest.approx(1.0)
    assert arrival_rate(5 * DAY_S + 15 * 3600) == pytest.approx(0.9)  # Saturday: 0.6 x 1.5
    assert arrival_rate(7 * DAY_S + 15 * 3600) == pytest.approx(1.5)  # Monday again


def test_arrivals_follow_the_day(jobs):
    # afternoon hours 13-17 against night hours 01-05: the profile's ratio is
    # (1 + 0.5 cos(-pi/6)) / (1 + 0.5 cos(-5pi/6)) averaged over the hour, about 2.6
    def share(lo: int, hi: int) -> int:
        return sum(lo <= (j.submit_time % DAY_S) / 3600 < hi for j in jobs)

    expected = sum(arrival_rate(h * 3600 + 1800) for h in range(13, 17)) / sum(
        arrival_rate(h * 3600 + 1800) for h in range(1, 5)
    )
    assert share(13, 17) / share(1, 5) == pytest.approx(expected, rel=0.25)
    assert share(13, 17) > 2 * share(1, 5)


def test_batches_are_one_users_sweep(jobs):
    by_time = {}
    for j in jobs:  # a batch's jobs are 1 s apart: group by the batch's first second
        by_time.setdefault((j.user, j.gpus), []).append(j.submit_time)
    runs = 0
    for times in by_time.values():
        times.sort()
        runs += sum(1 for a, b in itertools.pairwise(times) if b - a == pytest.approx(1))
    # Geometric batches of mean 2 jobs: about half of the jobs follow one of their batch
    assert 0.4 < runs / len(jobs) < 0.6


@pytest.mark.parametrize(
    ("count", "seed", "load", "gpus"), [(1500, 4, 0.9, 1024), (200, 5, 0.5, 64)]
)
def test_generated_trace_offers_the_requested_load(count, seed, load, gpus):
    jobs = generate_helios_trace(count, seed=seed, load=load, cluster_gpus=gpus)
    assert len(jobs) == count and jobs[0].submit_time == 0.0
    assert offered_load(jobs, gpus) == pytest.approx(load, rel=1e-3)
    assert jobs == generate_helios_trace(count, seed=seed, load=load, cluster_gpus=gpus)


def test_bad_arguments_are_one_error():
    with pytest.raises(TensorfabError, match="--generate needs N >= 1"):
        generate_helios_trace(0, seed=0, load=0.9, cluster_gpus=8)


def test_committed_trace_is_the_generators_seed_0():
    with gzip.open(COMMITTED, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    committed = [TraceJob(**r) for r in rows]
    assert len(committed) == 10000
    assert offered_load(committed, 1024) == pytest.approx(0.9, rel=0.01)
    assert committed == generate_helios_trace(10000, seed=0, load=0.9, cluster_gpus=1024)


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    jobs_simulate.configure(parser)
    return jobs_simulate.run(parser.parse_args(list(argv)))


def test_cli_shape_picks_the_generator(tmp_path, capsys):
    for shape, generate in (("helios", generate_helios_trace), ("philly", generate_trace)):
        out = tmp_path / f"{shape}.jsonl"
        argv = ["--generate", "50", "--seed", "2", "--load", "0.8", "--gpus", "64"]
        assert run_cli(*argv, "--shape", shape, "--out", str(out)) == 0
        assert load_trace(out) == sorted(generate(50, 2, 0.8, 64), key=lambda j: j.submit_time)
        assert "offered load 0.800 on 64 GPUs" in capsys.readouterr().out
    default = tmp_path / "default.jsonl"
    assert run_cli("--generate", "50", "--seed", "2", "--gpus", "64", "--out", str(default)) == 0
    assert load_trace(default) == generate_helios_trace(50, 2, 0.9, 64)
