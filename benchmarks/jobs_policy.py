"""The scheduling policies compared on the committed traces, and decide's cost.

    .venv/bin/python benchmarks/jobs_policy.py                  # both sets, writes results
    .venv/bin/python benchmarks/jobs_policy.py --set helios     # the study-shaped trace only
    .venv/bin/python benchmarks/jobs_policy.py --quick          # 2,000 jobs, no files written

Set ``helios`` replays ``benchmarks/traces/helios-10k-load0.9.jsonl.gz`` (10,000 jobs, offered
load 0.9 on 1,024 GPUs, ``tensorfab.jobs.trace_studies``: Helios run times and sizes, arrivals
that follow the day) and its 256-GPU twin (same seed and load) the same way; results:
``...-jobs-simulate-helios.{json,md}``.
Set ``philly``:

Part 1 replays ``benchmarks/traces/philly-10k-load0.9.jsonl.gz`` (10,000 jobs, offered load
0.9 on 1,024 GPUs, 8 per node) under fifo, priority and fair, each without and with EASY
backfill, through ``tensorfab.jobs.simulate`` (the same ``decide`` the daemon calls), and
then ``philly-10k-load0.9-256gpu.jsonl.gz`` (same generator, seed and load, on 256 GPUs: the
same jobs arriving 4 times slower, over a window longer than the longest job). For each trace
it also reports its offered load, the part of it that falls inside the arrival window, and
the hours in which the jobs would need more GPUs than the cluster has, had none waited.
Each replay also measures the steady state (``--steady``: the jobs submitted after the
warm-up, ``tensorfab.jobs.trace.steady_window``) and the most any policy could gain there
(every job starting on arrival: JCT = run time).
Part 2 times one ``decide`` over 10,000 queued jobs: on a full 1,024-GPU cluster (nothing
can start, every job is looked at) and on an idle one (about a thousand jobs start).

Results: ``benchmarks/results/cpu-2026-11-30-jobs-simulate.{json,md}``.
Every replay reports its wall and CPU time (the machine is shared: CPU time is the steadier).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

from tensorfab.files import write_text_atomic
from tensorfab.jobs.policy import Job, PolicyConfig, State, decide
from tensorfab.jobs.simulate import SimConfig, build_nodes, simulate
from tensorfab.jobs.trace import (
    COOLDOWN_SHARE,
    STEADY_FRACTION,
    generate_trace,
    load_trace,
    offered_load,
    steady_window,
    warmup_s,
    window_load,
)
from tensorfab.metrics.report import markdown_table

TRACE = Path("benchmarks/traces/philly-10k-load0.9.jsonl.gz")  # the target: 1,024 GPUs
# the same generator and seed at the same offered load on a quarter of the GPUs: the same jobs
# arriving 4 times slower (210 h of arrivals); fewer GPUs smooth out less, and it queues where
# the 1,024-GPU trace hardly does even in its steady state (see docs/jobs-simulate.md)
SMALL_TRACE = Path("benchmarks/traces/philly-10k-load0.9-256gpu.jsonl.gz")
RESULTS = Path("benchmarks/results/cpu-2026-11-30-jobs-simulate")
# the study-shaped trace (tensorfab.jobs.trace_studies, --shape helios), same seed, load, GPUs
HELIOS_TRACE = Path("benchmarks/traces/helios-10k-load0.9.jsonl.gz")
# the same generator, seed and load on 256 GPUs: the same jobs arriving 4 times slower
HELIOS_SMALL_TRACE = Path("benchmarks/traces/helios-10k-load0.9-256gpu.jsonl.gz")
HELIOS_RESULTS = Path("benchmarks/results/cpu-2026-11-30-jobs-simulate-helios")
# set name: (traces with their GPUs, results file, whether to time decide too)
SETS = {
    "philly": ([(TRACE, 1024), (SMALL_TRACE, 256)], RESULTS, True),
    "helios": ([(HELIOS_TRACE, 1024), (HELIOS_SMALL_TRACE, 256)], HELIOS_RESULTS, False),
}
COMMAND = "python benchmarks/jobs_policy.py"
NOW = 250_000.0  # after the last queued job was submitted
RUNS = [(p, b) for p in ("fifo", "priority", "fair") for b in (False, True)]


def compare(trace: list, gpus: int) -> list[dict]:
    rows = []
    for policy, backfill in RUNS:
        config = SimConfig(
            gpus=gpus,
            policy=PolicyConfig(policy=policy, backfill=backfill),
            measure=steady_window(trace),
        )
        cpu = time.process_time()
        report = simulate(trace, config)
        report["cpu_s"] = time.process_time() - cpu
        report["load_average_1min"] = os.getloadavg()[0]  # as the replay ends
        print(_line(report), file=sys.stderr, flush=True)
        rows.append(report)
    return rows


def _line(r: dict) -> str:
    return (
        f"{r['policy']:8s} backfill={r['backfill']!s:5s} util {r['utilisation']:.3f} "
        f"(arrivals {r['utilisation_arrivals']:.3f}) JCT {r['mean_jct_s']:.0f} s "
        f"p95 {r['p95_jct_s']:.0f} s wait {r['mean_wait_s']:.0f} s fair-err "
        f"{r['fair_share_error']:.3f} preempt {r['preemptions']} in {r['wall_s']:.1f} s "
        f"({r['cpu_s']:.1f} s CPU); steady: util {r['steady']['utilisation']:.3f} JCT "
        f"{r['steady']['mean_jct_s']:.0f} s wait {r['steady']['mean_wait_s']:.0f} s"
    )


def queued_jobs(count: int, seed: int = 0) -> list[Job]:
    """``count`` queued jobs shaped like the trace (GPUs, teams, priorities, limits)."""
    rng = random.Random(seed)
    out = []
    for i, tj in enumerate(generate_trace(count, seed, 0.9, 1024), 1):
        out.append(
            Job(
                i,
                tj.user,
                tj.team,
                tj.priority,
                tj.gpus,
                min(32, 4 * tj.gpus),
                0,
                tj.time_limit_s,
                tj.submit_time,
                "queued",
                preemptible=rng.random() < 0.5,
            )
        )
    return out


def full_cluster(nodes) -> list[Job]:
    """Every GPU busy with a 1-GPU job (half of them preemptible), limits spread over 10 h."""
    rng = random.Random(1)
    out, jid = [], 1_000_000
    for node in nodes:
        for g in node.gpus:
            jid += 1
            out.append(
                Job(
                    jid,
                    "r",
                    f"t{rng.randrange(8)}",
                    rng.choice((2, 4, 7)),
                    1,
                    4,
                    0,
                    rng.uniform(600, 36000),
                    NOW - 500,
                    "running",
                    preemptible=rng.random() < 0.5,
                    start_time=NOW - rng.uniform(0, 500),
                    node=node.name,
                    devices=(g,),
                    cores=tuple(range(4 * g, 4 * g + 4)),
                )
            )
    return out


def time_decide(state: State, now: float, config: PolicyConfig, repeat: int = 9) -> dict:
    """Wall and CPU time of one decide; the machine is shared, so CPU time is the steadier."""
    walls, cpus, actions = [], [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        actions = decide(state, now, config)
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return {
        "median_ms": statistics.median(walls) * 1e3,
        "min_ms": min(walls) * 1e3,
        "cpu_median_ms": statistics.median(cpus) * 1e3,
        "actions": len(actions),
    }


def decision_timing(count: int) -> list[dict]:
    nodes = build_nodes(SimConfig(gpus=1024))
    queued = queued_jobs(count)
    usage = {f"t{i}": 1000.0 * i for i in range(8)}
    rows = []
    for label, running in (
        ("full 1,024-GPU cluster", full_cluster(nodes)),
        ("idle 1,024-GPU cluster", []),
    ):
        state = State(nodes, tuple(running + queued), {}, usage)
        for policy in ("fifo", "fair"):
            config = PolicyConfig(policy=policy, backfill=True)
            row = {
                "cluster": label,
                "queued": count,
                "running": len(running),
                "policy": f"{policy} + backfill",
                **time_decide(state, 200_000.0, config),
            }
            print(row, file=sys.stderr, flush=True)
            rows.append(row)
    return rows


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def policy_table(part: dict) -> list[str]:
    header = [
        "policy",
        "backfill",
        "util.",
        "util. (arrivals)",
        "mean JCT h",
        "p95 JCT h",
        "mean wait h",
        "p95 wait h",
        "p99 wait h",
        "max wait h",
        "jobs that waited",
        "fair-share err.",
        "preempt.",
        "sim s",
        "CPU s",
    ]
    rows = [
        [
            r["policy"],
            "yes" if r["backfill"] else "no",
            f"{r['utilisation']:.3f}",
            f"{r['utilisation_arrivals']:.3f}",
            f"{r['mean_jct_s'] / 3600:.3f}",
            f"{r['p95_jct_s'] / 3600:.2f}",
            f"{r['mean_wait_s'] / 3600:.3f}",
            f"{r['p95_wait_s'] / 3600:.2f}",
            f"{r['p99_wait_s'] / 3600:.2f}",
            f"{r['max_wait_s'] / 3600:.2f}",
            f"{r['waited_share']:.1%}",
            f"{r['fair_share_error']:.3f}",
            r["preemptions"],
            f"{r['wall_s']:.1f}",
            f"{r['cpu_s']:.1f}",
        ]
        for r in part["policies"]
    ]
    t = part["targets"]
    return [
        f"### `{part['trace']}` on {part['gpus']} GPUs (8 per node), {part['jobs']} jobs, "
        f"offered load {part['offered_load']:.3f}",
        "",
        f"Had no job waited, the jobs would keep {part['window_load']:.1%} of the GPUs busy while "
        f"jobs arrive, and need more than {part['gpus']} GPUs for "
        f"{part['over_capacity_h']:.1f} h of the {part['window_h']:.1f} h arrival window.",
        "",
        *markdown_table(header, rows, "llrrrrrrrrrrrrr"),
        "",
        f"fair + backfill vs fifo: mean JCT {t['fair_backfill_jct_vs_fifo']:+.1%}, "
        f"utilisation {t['fair_backfill_util_minus_fifo']:+.4f} (whole span), "
        f"{t['fair_backfill_util_arrivals_minus_fifo']:+.4f} (arrival window); "
        f"slowest replay {t['max_sim_wall_s']:.1f} s ({t['max_sim_cpu_s']:.1f} s CPU); no policy "
        f"can do better than {t['best_possible_jct_vs_fifo']:+.1%} (every job starting the "
        "moment it arrives).",
        "",
        *steady_table(part),
    ]


def steady_table(part: dict) -> list[str]:
    header = [
        "policy",
        "backfill",
        "util.",
        "mean JCT h",
        "p95 JCT h",
        "mean wait h",
        "p99 wait h",
        "max wait h",
        "jobs that waited",
        "started after last arrival",
    ]
    rows = []
    for r in part["policies"]:
        s = r["steady"]
        rows.append(
            [
                r["policy"],
                "yes" if r["backfill"] else "no",
                f"{s['utilisation']:.3f}",
                f"{s['mean_jct_s'] / 3600:.3f}",
                f"{s['p95_jct_s'] / 3600:.2f}",
                f"{s['mean_wait_s'] / 3600:.3f}",
                f"{s['p99_wait_s'] / 3600:.2f}",
                f"{s['max_wait_s'] / 3600:.2f}",
                f"{s['waited_share']:.1%}",
                f"{s['started_after_last_arrival']:.1%}",
            ]
        )
    t, w = part["targets"], part["steady"]
    if "steady_fair_backfill_jct_vs_fifo" not in t:
        return [f"No steady part: the warm-up ({w['warmup_h']:.1f} h) outlasts the arrivals.", ""]
    return [
        f"Steady state: the {w['jobs']} jobs submitted {w['from_h']:.1f}-{w['to_h']:.1f} h "
        f"after the first (warm-up {w['warmup_h']:.1f} h: the cluster {STEADY_FRACTION:.0%} of "
        "the way to its offered load, from the run times alone; cool-down: the last "
        f"{COOLDOWN_SHARE:.0%} of the arrival window).",
        "",
        *markdown_table(header, rows, "llrrrrrrrr"),
        "",
        f"fair + backfill vs fifo in steady state: mean JCT "
        f"{t['steady_fair_backfill_jct_vs_fifo']:+.1%}, utilisation "
        f"{t['steady_fair_backfill_util_minus_fifo']:+.4f}; no policy can do better than "
        f"{t['steady_best_possible_jct_vs_fifo']:+.1%} (every measured job starting the moment "
        "it arrives: JCT = run time).",
        "",
    ]


def markdown(doc: dict) -> str:
    decide_rows = [
        [
            r["cluster"],
            r["running"],
            r["policy"],
            f"{r['median_ms']:.1f}",
            f"{r['min_ms']:.1f}",
            f"{r['cpu_median_ms']:.1f}",
            r["actions"],
        ]
        for r in doc["decide"]
    ]
    lines = [
        "# tensorfab jobs simulate: policy comparison",
        "",
        f"Device: {doc['device']}. Date: {doc['date']}. Command: `{doc['command']}`.",
        f"1-minute load average at the end: {doc['load_average_1min']:.1f} (several sessions share "
        "the machine).",
        "",
    ]
    for part in doc["traces"]:
        lines += policy_table(part)
    if not decide_rows:
        return "\n".join(lines) + "\n"
    lines += [
        "### One `decide` over 10,000 queued jobs",
        "",
        *markdown_table(
            [
                "cluster",
                "running",
                "policy",
                "wall median ms",
                "wall min ms",
                "CPU median ms",
                "actions",
            ],
            decide_rows,
            "lrlrrrr",
        ),
    ]
    return "\n".join(lines) + "\n"


def over_capacity_hours(trace: list, gpus: int) -> float:
    """Hours of the arrival window in which the jobs, had none waited, would need > ``gpus``."""
    last = trace[-1].submit_time
    events = sorted(
        [(j.submit_time, j.gpus) for j in trace]
        + [(j.submit_time + j.duration_s, -j.gpus) for j in trace]
    )
    busy, over, before = 0, 0.0, events[0][0]
    for at, change in events:
        if busy > gpus:
            over += max(0.0, min(at, last) - before)
        busy, before = busy + change, at
    return over / 3600


def steady_targets(trace: list, fifo: dict, fair: dict) -> dict:
    """fair + backfill against fifo on the steady-state jobs, and the most any policy can gain."""
    lo, hi = steady_window(trace)
    runs = [j.duration_s for j in trace if lo <= j.submit_time <= hi]
    base = fifo["steady"]["mean_jct_s"]
    if not runs or not base:
        return {}  # the arrival window is shorter than the warm-up (e.g. --quick)
    return {
        "steady_fair_backfill_jct_vs_fifo": fair["steady"]["mean_jct_s"] / base - 1,
        "steady_fair_backfill_util_minus_fifo": fair["steady"]["utilisation"]
        - fifo["steady"]["utilisation"],
        "steady_best_possible_jct_vs_fifo": sum(runs) / len(runs) / base - 1,
    }


def replay(path: Path, gpus: int, quick: bool) -> dict:
    trace = load_trace(path)
    if quick:
        trace = trace[:2000]
    rows = compare(trace, gpus)
    lo, hi = steady_window(trace)
    first = trace[0].submit_time
    fifo = next(r for r in rows if r["policy"] == "fifo" and not r["backfill"])
    fair = next(r for r in rows if r["policy"] == "fair" and r["backfill"])
    targets = {
        "fair_backfill_jct_vs_fifo": fair["mean_jct_s"] / fifo["mean_jct_s"] - 1,
        "fair_backfill_util_minus_fifo": fair["utilisation"] - fifo["utilisation"],
        "fair_backfill_util_arrivals_minus_fifo": fair["utilisation_arrivals"]
        - fifo["utilisation_arrivals"],
        "max_sim_wall_s": max(r["wall_s"] for r in rows),
        "max_sim_cpu_s": max(r["cpu_s"] for r in rows),
        # had no job waited (JCT = run time): the most any policy could gain over fifo
        "best_possible_jct_vs_fifo": sum(j.duration_s for j in trace)
        / len(trace)
        / fifo["mean_jct_s"]
        - 1,
        **steady_targets(trace, fifo, fair),
    }
    return {
        "trace": str(path),
        "gpus": gpus,
        "jobs": len(trace),
        "window_h": (trace[-1].submit_time - trace[0].submit_time) / 3600,
        "offered_load": offered_load(trace, gpus),
        "window_load": window_load(trace, gpus),
        "over_capacity_h": over_capacity_hours(trace, gpus),
        "steady": {
            "warmup_h": warmup_s(trace) / 3600,
            "from_h": (lo - first) / 3600,
            "to_h": (hi - first) / 3600,
            "jobs": sum(lo <= j.submit_time <= hi for j in trace),
        },
        "policies": rows,
        "targets": targets,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 jobs, no files written")
    parser.add_argument(
        "--set", choices=[*SETS, "all"], default="all", help="which traces (default: all)"
    )
    args = parser.parse_args()
    for name in SETS if args.set == "all" else [args.set]:
        run_set(name, args.quick)
    return 0


def run_set(name: str, quick: bool) -> None:
    """Replay one set of traces (and time decide if the set says so); write its results."""
    traces, results, with_decide = SETS[name]
    doc = {
        "device": f"cpu ({cpu_name()}, {os.cpu_count()} cores, shared with other sessions)",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "command": f"{COMMAND} --set {name}",
        "traces": [replay(path, gpus, quick) for path, gpus in traces],
        "decide": decision_timing(2000 if quick else 10_000) if with_decide else [],
    }
    doc["load_average_1min"] = os.getloadavg()[0]
    summary = {p["trace"]: p["targets"] for p in doc["traces"]}
    if doc["decide"]:
        summary["max_decide_10k_cpu_median_ms"] = max(r["cpu_median_ms"] for r in doc["decide"])
        summary["max_decide_10k_wall_median_ms"] = max(r["median_ms"] for r in doc["decide"])
    print(json.dumps(summary, indent=2))
    if not quick:
        write_text_atomic(results.with_suffix(".json"), json.dumps(doc, indent=2) + "\n")
        write_text_atomic(results.with_suffix(".md"), markdown(doc))


if __name__ == "__main__":
    raise SystemExit(main())
