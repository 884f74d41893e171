"""``tensorfab jobs simulate``: replay a job trace through the scheduler, or generate one."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tensorfab.errors import TensorfabError
from tensorfab.jobs.policy import POLICIES, PolicyConfig
from tensorfab.jobs.simulate import SimConfig, simulate
from tensorfab.jobs.trace import (
    COOLDOWN_SHARE,
    STEADY_FRACTION,
    load_trace,
    offered_load,
    save_trace,
    steady_window,
    warmup_s,
)
from tensorfab.jobs.trace_studies import GENERATORS

HELP = "replay a job trace through the scheduler on a virtual GPU cluster (or generate a trace)"
EXAMPLE = """\
tensorfab jobs simulate benchmarks/traces/helios-10k-load0.9.jsonl.gz --policy fair --backfill
tensorfab jobs simulate benchmarks/traces/philly-10k-load0.9.jsonl.gz --policy fifo --steady --json
tensorfab jobs simulate --generate 10000 --seed 0 --load 0.9 --gpus 1024 --out trace.jsonl.gz
tensorfab jobs simulate --generate 10000 --shape philly --out philly.jsonl.gz  # the older shape"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace", nargs="?", help="trace file (.jsonl or .jsonl.gz)")
    parser.add_argument(
        "--gpus", type=int, default=1024, help="GPUs in the virtual cluster (default: %(default)s)"
    )
    parser.add_argument(
        "--gpus-per-node", type=int, default=8, help="GPUs per node (default: %(default)s)"
    )
    parser.add_argument(
        "--policy", choices=POLICIES, default="fair", help="queue order (default: %(default)s)"
    )
    parser.add_argument(
        "--backfill", action="store_true", help="EASY backfill into gaps (default: off)"
    )
    parser.add_argument("--no-preemption", action="store_true", help="never preempt running jobs")
    parser.add_argument(
        "--grace-s", type=float, default=30.0, help="grace after SIGTERM (default: %(default)s)"
    )
    parser.add_argument("--max-wait-s", type=float, default=None, help="ageing (default: none)")
    parser.add_argument(
        "--half-life-s",
        type=float,
        default=7 * 24 * 3600.0,
        help="fair-share usage half-life (default: %(default)s)",
    )
    parser.add_argument(
        "--share",
        action="append",
        default=[],
        metavar="TEAM=X",
        help="a team's fair share (default 1.0 each; repeatable)",
    )
    parser.add_argument(
        "--quota",
        action="append",
        default=[],
        metavar="TEAM=N",
        help="GPUs guaranteed to a team (repeatable)",
    )
    parser.add_argument(
        "--horizon-s",
        type=float,
        default=None,
        help="stop at this virtual time (default: when every job ended)",
    )
    parser.add_argument(
        "--steady",
        action="store_true",
        help="also measure the steady state: the jobs submitted after the warm-up (the cluster "
        f"{STEADY_FRACTION * 100:.0f} %% of the way to its offered load, from the trace's run "
        f"times) and before the last {COOLDOWN_SHARE * 100:.0f} %% of the arrival window "
        "(default: off)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    gen = parser.add_argument_group("generate a trace instead of replaying one")
    gen.add_argument("--generate", type=int, metavar="N", help="number of jobs to generate")
    gen.add_argument(
        "--shape",
        choices=sorted(GENERATORS),
        default="helios",
        help="helios: sizes and run times from Helios (SC'21), arrivals that follow the day; "
        "philly: the older Philly-shaped jobs with Poisson arrivals (docs/jobs-simulate.md) "
        "(default: %(default)s)",
    )
    gen.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    gen.add_argument(
        "--load",
        type=float,
        default=0.9,
        help="offered load on --gpus: the jobs' GPU-seconds / (GPUs x arrival window), exact "
        "for the trace drawn (default: %(default)s)",
    )
    gen.add_argument("--out", help="where to write the trace (.jsonl or .jsonl.gz)")


def run(args: argparse.Namespace) -> int:
    if args.generate is not None:
        return _generate(args)
    if not args.trace:
        raise TensorfabError("give a TRACE file to replay, or --generate N --out FILE")
    policy = policy_config(args)  # bad flags before reading a large trace
    trace = load_trace(Path(args.trace))
    config = SimConfig(
        gpus=args.gpus,
        gpus_per_node=args.gpus_per_node,
        policy=policy,
        horizon_s=args.horizon_s,
        measure=_steady(trace) if args.steady else None,
    )
    try:
        report = simulate(trace, config, progress=_progress())
    except TensorfabError as exc:  # name the file: the simulator only knows the job
        raise TensorfabError(f"{args.trace}: {exc}") from None
    report["trace"] = args.trace
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0


def _steady(trace: list) -> tuple[float, float]:
    lo, hi = steady_window(trace)
    if not lo < hi:
        hours = (trace[-1].submit_time - trace[0].submit_time) / 3600
        raise TensorfabError(
            f"--steady: the trace's {hours:.1f} h of arrivals end before its warm-up "
            f"({warmup_s(trace) / 3600:.1f} h) and cool-down do: no steady part to measure "
            "(replay more jobs, or leave out --steady)"
        )
    return lo, hi


def policy_config(args: argparse.Namespace) -> PolicyConfig:
    """The policy the flags describe."""
    for name in ("grace_s", "half_life_s"):
        if not getattr(args, name) > 0:
            raise TensorfabError(f"--{name.replace('_', '-')} must be > 0")
    return PolicyConfig(
        policy=args.policy,
        backfill=args.backfill,
        max_wait_s=args.max_wait_s,
        usage_half_life_s=args.half_life_s,
        shares=_pairs(args.share, "--share", float),
        quotas=_pairs(args.quota, "--quota", int),
        preemption=not args.no_preemption,
        grace_s=args.grace_s,
    )


def _pairs(items: list[str], flag: str, kind: Callable) -> dict:
    out = {}
    for item in items:
        team, sep, value = item.partition("=")
        try:
            number = kind(value)
        except ValueError:
            number = None
        if not sep or not team or number is None or number < 0:
            raise TensorfabError(f"{flag} {item!r}: give TEAM=NUMBER (a number >= 0)")
        out[team] = number
    return out


def _generate(args: argparse.Namespace) -> int:
    if not args.out:
        raise TensorfabError("--generate needs --out FILE")
    jobs = GENERATORS[args.shape](args.generate, args.seed, args.load, args.gpus)
    save_trace(jobs, Path(args.out))
    hours = (jobs[-1].submit_time - jobs[0].submit_time) / 3600
    print(
        f"{len(jobs)} jobs over {hours:.1f} h of arrivals, offered load "
        f"{f'{offered_load(jobs, args.gpus):.3f}' if len(jobs) > 1 else 'n/a (one job)'} "
        f"on {args.gpus} GPUs -> {args.out}"
    )
    return 0


def _progress() -> Callable[[int, int], None]:
    """Jobs ended / all, with an ETA, on stderr once a run takes more than a few seconds."""
    began = time.monotonic()

    def show(done: int, total: int) -> None:
        spent = time.monotonic() - began
        if spent < 3 or not done:
            return
        eta = spent * (total - done) / done
        print(f"  {done}/{total} jobs ended, ETA {eta:.0f} s", file=sys.stderr, flush=True)

    return show


def format_report(r: dict) -> str:
    """The report as a few readable lines."""
    lines = [
        f"{r['policy']}{' + backfill' if r['backfill'] else ''} on {r['gpus']} GPUs "
        f"({r['gpus_per_node']} per node): {r['succeeded']}/{r['jobs']} jobs succeeded, "
        f"{r['failed']} failed, {r['unfinished']} unfinished",
        f"  utilisation {r['utilisation']:.1%} (arrival window {r['utilisation_arrivals']:.1%})",
        f"  JCT mean {r['mean_jct_s'] / 3600:.2f} h, p95 {r['p95_jct_s'] / 3600:.2f} h; "
        f"wait mean {r['mean_wait_s'] / 3600:.2f} h, p95 {r['p95_wait_s'] / 3600:.2f} h",
        f"  fair-share error {r['fair_share_error']:.1%}; preemptions {r['preemptions']}, "
        f"time-limit stops {r['time_limit_stops']}",
        "  GPU-hours by team: " + ", ".join(f"{t} {h:.0f}" for t, h in r["team_gpu_hours"].items()),
        f"  {r['decisions']} decisions in {r['wall_s']:.1f} s",
    ]
    if "steady" in r:
        lines.insert(-1, _steady_line(r["steady"]))
    return "\n".join(lines)


def _steady_line(s: dict) -> str:
    return (
        f"  steady state ({s['jobs']} jobs submitted {s['from_s'] / 3600:.1f}-"
        f"{s['to_s'] / 3600:.1f} h): utilisation {s['utilisation']:.1%}, JCT mean "
        f"{s['mean_jct_s'] / 3600:.2f} h, p95 {s['p95_jct_s'] / 3600:.2f} h; wait mean "
        f"{s['mean_wait_s'] / 3600:.2f} h; {s['started_after_last_arrival']:.1%} started "
        "after the last arrival"
    )
