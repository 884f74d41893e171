"""``tensorfab jobs``: the node's job queue: the daemon (``up``) and the client commands."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

from tensorfab.cli import jobs_simulate
from tensorfab.cli.train import add_set_argument
from tensorfab.errors import TensorfabError

EXAMPLE = """\
tensorfab jobs up --simulate-gpus 4 &                 # the daemon (loopback, single user)
tensorfab jobs submit examples/digits-lenet.yaml --gpus 1 --priority high --time 2h \\
    --set train.epochs=5
tensorfab jobs submit --gpus 0 --cpus 1 -- tensorfab export runs/digits-lenet --repo repo
tensorfab jobs ls --all
tensorfab jobs logs 1 -f
tensorfab jobs report --since 7d --by team --csv"""

UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
UNITS_B = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


# -- parsing helpers ----------------------------------------------------------------------


def parse_duration(text: str, flag: str = "--time") -> float:
    """``90s``, ``30m``, ``2h``, ``1d``, ``1h30m``, ``HH:MM:SS`` or plain seconds -> seconds."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    elif re.fullmatch(r"\d+(:\d{1,2}){1,2}", value):
        seconds = float(sum(int(p) * 60**i for i, p in enumerate(reversed(value.split(":")))))
    elif re.fullmatch(r"(\d+(\.\d+)?[smhd])+", value):
        parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", value)
        seconds = sum(float(n) * UNITS_S[u] for n, u in parts)
    else:
        raise TensorfabError(f"{flag} {text!r}: use e.g. 90s, 30m, 2h, 1d, 1h30m or 01:30:00")
    if seconds <= 0:
        raise TensorfabError(f"{flag} {text!r}: must be above 0")
    return seconds


def parse_bytes(text: str) -> int:
    """``512M``, ``4G``, ``4GiB`` or a plain number of bytes."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?", text.strip().lower())
    if not match:
        raise TensorfabError(f"--mem {text!r}: use e.g. 512M, 4G or a number of bytes")
    return int(float(match.group(1)) * UNITS_B[match.group(2)])


def _add_client_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="daemon URL (default: TENSORFAB_JOBS_URL, or daemon.json)")
    parser.add_argument(
        "--state-dir", type=Path, help="where to find daemon.json (default ~/.tensorfab/jobs)"
    )


def _sub(subs: Any, name: str, help: str, example: str) -> argparse.ArgumentParser:
    return subs.add_parser(
        name,
        help=help,
        description=help,
        epilog="example:\n  " + example.replace("\n", "\n  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


# -- configure ----------------------------------------------------------------------------


def _configure_up(subs: Any) -> None:
    p = _sub(
        subs,
        "up",
        "run this node's scheduler daemon (API + agent + web dashboard at /) in the foreground",
        "tensorfab jobs up --simulate-gpus 8 --port 8321 --state-dir /scratch/jobs\n"
        "# then open http://127.0.0.1:8321/ (with --tokens: log in with your token)\n"
        "tensorfab jobs up --backend ray --address 10.0.0.5:6379   # an existing Ray cluster\n"
        "tensorfab jobs up --backend ray --address 10.0.0.5:6379 --jobs-dir /shared/jobs",
    )
    p.add_argument("--simulate-gpus", type=int, metavar="N", help="N virtual GPUs (jobs on CPU)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    p.add_argument("--port", type=int, default=8321, help="port (default 8321; 0 = any free)")
    p.add_argument(
        "--state-dir",
        type=Path,
        help="queue database and job folders (default ~/.tensorfab/jobs; must be a local disk)",
    )
    p.add_argument(
        "--jobs-dir",
        type=Path,
        metavar="PATH",
        help="job folders (launch, logs, exit status) apart from the state dir: with "
        "--backend ray on several machines, a path every Ray node sees (default STATE_DIR/jobs)",
    )
    p.add_argument(
        "--tokens",
        type=Path,
        metavar="FILE",
        help="tokens file (user, teams, token_sha256); without it: single user",
    )
    p.add_argument(
        "--policy",
        choices=("fifo", "priority", "fair"),
        default="fair",
        help="queue order (default fair: priority, then team fair share)",
    )
    p.add_argument("--no-backfill", action="store_true", help="never start jobs out of order")
    p.add_argument("--no-preemption", action="store_true", help="never preempt a running job")
    p.add_argument("--max-wait", help="a job queued this long goes first (e.g. 1d; default off)")
    p.add_argument("--grace", default="30s", help="SIGTERM to SIGKILL on a stop (default 30s)")
    p.add_argument(
        "--cpus", type=int, metavar="N", help="CPU slots offered (default: this process's cores)"
    )
    p.add_argument("--half-life", default="7d", help="fair-share usage half-life (default 7d)")
    p.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="how jobs run: local processes (default) or Ray actors on a Ray cluster",
    )
    p.add_argument(
        "--address",
        help="Ray backend: the cluster (HOST:PORT, ray://HOST:10001, or local for a private "
        "Ray on 127.0.0.1; default RAY_ADDRESS)",
    )
    p.add_argument("--test-jobs", action="store_true", help=argparse.SUPPRESS)


def _configure_submit(subs: Any) -> None:
    p = _sub(
        subs,
        "submit",
        "queue a training spec, or any tensorfab command after --",
        "tensorfab jobs submit examples/mnist-lenet.yaml --gpus 1 --priority high "
        "--time 2h --set train.epochs=5",
    )
    p.add_argument(
        "args",
        nargs="*",
        metavar="SPEC | -- tensorfab COMMAND ...",
        help="a job spec YAML, or -- followed by a tensorfab command",
    )
    add_set_argument(p)
    p.add_argument("--gpus", type=int, default=0, help="GPUs, all on this node (default 0)")
    p.add_argument("--cpus", type=int, default=1, help="CPU cores, pinned (default 1)")
    p.add_argument("--mem", help="host memory to reserve, e.g. 8G (default: none)")
    p.add_argument(
        "--priority", default="normal", help="low|normal|high|urgent or 0-9 (default normal)"
    )
    p.add_argument("--time", help="time limit, e.g. 2h; past it the job is stopped and fails")
    p.add_argument(
        "--after",
        type=int,
        action="append",
        default=[],
        metavar="ID",
        help="start only after job ID succeeded (repeatable; an unknown ID is refused)",
    )
    p.add_argument("--retries", type=int, default=0, help="restarts after a crash (default 0)")
    p.add_argument("--team", help="team to charge (default: your first team)")
    p.add_argument(
        "--run-dir",
        help="new run directory, refused if it exists (default: runs/<name> under this folder)",
    )
    p.add_argument("--hold", action="store_true", help="queue it held, until `jobs release`")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    _add_client_args(p)


def _configure_queries(subs: Any) -> None:
    p = _sub(
        subs,
        "ls",
        "list queued and running jobs (--all: ended ones too)",
        "tensorfab jobs ls --all --json",
    )
    p.add_argument("--all", action="store_true", help="include ended jobs")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_client_args(p)
    p = _sub(
        subs,
        "show",
        "one job: resources, accounting and every state change",
        "tensorfab jobs show 17",
    )
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_client_args(p)
    p = _sub(subs, "logs", "a job's output", "tensorfab jobs logs 17 -f")
    p.add_argument("id", type=int)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until it ends")
    p.add_argument("--stderr", action="store_true", help="the error stream instead of stdout")
    _add_client_args(p)
    for name, what in (
        ("cancel", "cancel a job (a running one is stopped)"),
        ("hold", "keep a queued job from starting"),
        ("release", "let a held job start again"),
    ):
        p = _sub(subs, name, what, f"tensorfab jobs {name} 17")
        p.add_argument("id", type=int)
        _add_client_args(p)


def _configure_watch(subs: Any) -> None:
    p = _sub(
        subs,
        "top",
        "live view: devices, who runs where, utilisation",
        "tensorfab jobs top --interval 2",
    )
    p.add_argument("--interval", type=float, default=2.0, help="seconds between frames")
    p.add_argument("--once", action="store_true", help="print one frame and exit")
    p.add_argument("--json", action="store_true", help="print the node view as JSON (once)")
    _add_client_args(p)
    p = _sub(
        subs,
        "report",
        "accounting: wait, run time, GPU-/CPU-hours, energy by team or user",
        "tensorfab jobs report --since 7d --by team --csv",
    )
    p.add_argument("--since", default="7d", help="jobs submitted in this window (default 7d)")
    p.add_argument("--by", choices=("team", "user"), default="team", help="default team")
    form = p.add_mutually_exclusive_group()
    form.add_argument("--csv", action="store_true", help="print CSV")
    form.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--plot", type=Path, help="also write a PNG of GPU-hours per group here")
    _add_client_args(p)


def configure(parser: argparse.ArgumentParser) -> None:
    subs = parser.add_subparsers(dest="jobs_command", metavar="SUBCOMMAND")
    _configure_up(subs)
    _configure_submit(subs)
    _configure_queries(subs)
    _configure_watch(subs)
    p = _sub(subs, "simulate", jobs_simulate.HELP, jobs_simulate.EXAMPLE.strip())
    jobs_simulate.configure(p)


# -- commands -----------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Any:
    from tensorfab.jobs.client import JobsClient

    return JobsClient.connect(args.url, args.state_dir)


def cmd_up(args: argparse.Namespace) -> int:
    if args.backend == "ray":
        from tensorfab.engine.raycluster import import_ray

        import_ray()  # without the extra: one line, before the daemon's imports
    from tensorfab.jobs.daemon import DaemonOptions, default_state_dir, run_daemon
    from tensorfab.jobs.policy import PolicyConfig

    if args.simulate_gpus is not None and args.simulate_gpus < 0:
        raise TensorfabError(f"--simulate-gpus {args.simulate_gpus}: must be 0 or more")
    if args.cpus is not None and args.cpus < 1:
        raise TensorfabError(f"--cpus {args.cpus}: must be at least 1")
    if not 0 <= args.port <= 65535:
        raise TensorfabError(f"--port {args.port}: choose a port from 0 to 65535")
    if args.jobs_dir is not None:
        try:
            args.jobs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TensorfabError(
                f"--jobs-dir {args.jobs_dir}: cannot create it ({exc.strerror})"
            ) from None
    policy = PolicyConfig(
        policy=args.policy,
        backfill=not args.no_backfill,
        max_wait_s=parse_duration(args.max_wait, "--max-wait") if args.max_wait else None,
        usage_half_life_s=parse_duration(args.half_life, "--half-life"),
        preemption=not args.no_preemption,
        grace_s=parse_duration(args.grace, "--grace"),
    )
    options = DaemonOptions(
        state_dir=args.state_dir or default_state_dir(),
        jobs_dir=args.jobs_dir,
        host=args.host,
        port=args.port,
        simulate_gpus=args.simulate_gpus,
        cpu_slots=args.cpus,
        tokens_file=args.tokens,
        policy=policy,
        allow_test_jobs=args.test_jobs,
        backend=args.backend,
        ray_address=args.address,
        announce=lambda line: print(line, flush=True),
    )
    stopped_by = run_daemon(options)
    if stopped_by is None:
        return 0
    name = signal.Signals(stopped_by).name
    print(f"stopped on {name}; running jobs keep running and the next `jobs up` adopts them")
    return 128 + stopped_by


def submit_request(args: argparse.Namespace) -> dict[str, Any]:
    """The request body for ``POST /jobs``: the spec resolved and checked here, first."""
    body: dict[str, Any] = {
        "cwd": os.getcwd(),
        "gpus": args.gpus,
        "cpus": args.cpus,
        "mem_bytes": parse_bytes(args.mem) if args.mem else 0,
        "priority": args.priority,
        "time_limit_s": parse_duration(args.time) if args.time else None,
        "after": args.after,
        "retries": args.retries,
        "team": args.team,
        "run_dir": args.run_dir,
        "hold": args.hold,
    }
    words = list(args.args)
    if words and words[0] == "tensorfab":
        if args.overrides:
            raise TensorfabError("--set: only for a spec, not for a command after --")
        if len(words) < 2:
            raise TensorfabError("after -- give a tensorfab command, e.g. tensorfab export ...")
        return {**body, "kind": "command", "args": words[1:]}
    if len(words) != 1:
        raise TensorfabError(
            "give one job spec YAML, or -- tensorfab COMMAND ... (only tensorfab commands run)"
        )
    return {**body, "kind": "train", "spec_yaml": resolved_spec(words[0], args.overrides)}


def resolved_spec(path: str, overrides: list[str]) -> str:
    """The spec with ``--set`` applied, validated as ``tensorfab spec`` does, as YAML."""
    from tensorfab.models import model_entry
    from tensorfab.spec import dump_spec, load_spec

    spec = load_spec(path, overrides)
    model_entry(spec.model.name)
    return dump_spec(spec)


def cmd_submit(args: argparse.Namespace) -> int:
    body = submit_request(args)
    with _client(args) as client:
        answer = client.submit(body)
    if args.json:
        print_json(answer)
    else:
        where = f" (run dir {answer['run_dir']})" if answer.get("run_dir") else ""
        print(f"submitted job {answer['id']}{where}")
    return 0


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def jobs_table(rows: list[dict[str, Any]]) -> str:
    """``jobs ls`` as aligned text: id, state, user/team, resources, wait, run, devices."""
    head = ("ID", "STATE", "USER", "TEAM", "PRIO", "GPUS", "WAIT", "RUN", "DEVICES", "NAME")
    lines = [head]
    for r in rows:
        lines.append(
            (
                str(r["id"]),
                r["state"],
                r["user"],
                r["team"],
                str(r["priority"]),
                str(r["gpus"]),
                _duration(r["wait_s"]),
                _duration(r["run_s"]),
                ",".join(r["devices"]) if r["state"] == "running" else "-",
                r["name"][:40],
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def cmd_ls(args: argparse.Namespace) -> int:
    with _client(args) as client:
        rows = client.jobs(all=args.all)
    if args.json:
        print_json(rows)
    elif rows:
        print(jobs_table(rows))
    else:
        print("no jobs" if args.all else "no queued or running jobs (--all shows ended ones)")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.show(args.id)
    if args.json:
        print_json(job)
        return 0
    keys = (
        "state",
        "user",
        "team",
        "kind",
        "name",
        "priority",
        "gpus",
        "cpus",
        "devices",
        "cores",
        "attempt",
        "preemptions",
        "retries_used",
        "retries",
        "exit_code",
        "run_dir",
        "job_dir",
        "cwd",
    )
    print(f"job {job['id']}")
    for key in keys:
        print(f"  {key + ':':14}{job.get(key)}")
    energy = "-" if job["energy_j"] is None else f"{job['energy_j'] / 3.6e6:.4f} kWh"
    print(
        f"  {'wait:':14}{_duration(job['wait_s'])}   run: {_duration(job['run_s'])}   "
        f"GPU-h: {job['gpu_s'] / 3600:.3f}   CPU-h: {job['cpu_s'] / 3600:.3f}   energy: {energy}"
    )
    print("  history:")
    for event in job["events"]:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event["at"]))
        print(f"    {stamp}  {event['state']:10} {event['reason']}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    stream = "stderr" if args.stderr else "stdout"
    offset = 0
    with _client(args) as client:
        while True:
            chunk = client.logs(args.id, stream, offset)
            sys.stdout.write(chunk["text"])
            sys.stdout.flush()
            offset = chunk["offset"]
            if not args.follow or (chunk["ended"] and not chunk["text"]):
                return 0
            if not chunk["text"]:
                time.sleep(0.5)


def cmd_action(args: argparse.Namespace) -> int:
    with _client(args) as client:
        answer = client.act(args.id, args.jobs_command)
    if answer.get("stopping"):
        print(f"job {args.id}: stopping (SIGTERM, then SIGKILL after the grace period)")
    else:
        print(f"job {args.id}: {answer['state']}")
    return 0


def top_frame(view: dict[str, Any]) -> str:
    """One frame of ``jobs top``: each device, its job and owner, utilisation if measured."""
    lines = [
        f"{view['node']}: {view['running']} running, {view['queued']} queued, "
        f"CPU slots {view['cpu_slots_used']}/{view['cpu_slots']}",
        f"{'DEVICE':<12}{'JOB':>6}  {'USER':<12}{'TEAM':<12}{'UTIL':>6}  NAME",
    ]
    for d in view["devices"]:
        readings = d.get("readings") or {}
        util = readings.get("utilization_pct")
        lines.append(
            f"{d['id'][:12]:<12}{d['job'] or '-':>6}  {d['user'] or '-':<12}"
            f"{d['team'] or '-':<12}{'-' if util is None else f'{util}%':>6}  {d['name']}"
        )
    return "\n".join(lines)


def cmd_top(args: argparse.Namespace) -> int:
    if not args.interval > 0:
        raise TensorfabError(f"--interval {args.interval}: must be above 0")
    with _client(args) as client:
        if args.json:
            print_json(client.node())
            return 0
        while True:
            frame = top_frame(client.node())
            if args.once:
                print(frame)
                return 0
            sys.stdout.write("\x1b[H\x1b[2J" + frame + "\n")
            sys.stdout.flush()
            time.sleep(args.interval)


def cmd_report(args: argparse.Namespace) -> int:
    from tensorfab.jobs import accounting

    now = time.time()
    since = accounting.parse_since(args.since, now)
    with _client(args) as client:
        records = client.usage(since)
    rows = accounting.summarize(records, since, args.by, now)
    if args.json:
        print(accounting.to_json(rows, args.by, since, now))
    elif args.csv:
        sys.stdout.write(accounting.to_csv(rows))
    else:
        print(accounting.to_markdown(rows, args.by))
    if args.plot:
        path = accounting.plot_usage(records, since, now, args.plot, args.by)
        print(f"plot: {path}", file=sys.stderr)
    return 0


COMMANDS = {
    "up": cmd_up,
    "submit": cmd_submit,
    "ls": cmd_ls,
    "show": cmd_show,
    "logs": cmd_logs,
    "cancel": cmd_action,
    "hold": cmd_action,
    "release": cmd_action,
    "top": cmd_top,
    "report": cmd_report,
}


def run(args: argparse.Namespace) -> int:
    name = getattr(args, "jobs_command", None)
    if name is None:
        raise TensorfabError(
            "jobs: give a subcommand (up, submit, ls, show, logs, cancel, hold, release, top, "
            "report, simulate); see tensorfab jobs --help"
        )
    if name == "simulate":
        return int(jobs_simulate.run(args) or 0)
    return int(COMMANDS[name](args) or 0)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
