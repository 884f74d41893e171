"""``tensorfab train SPEC``: validate the spec, run it, print the summary."""

from __future__ import annotations

import argparse
import json
import sys

from tensorfab.errors import TensorfabError
from tensorfab.spec import JobSpec, load_spec
from tensorfab.spec.names import RULE, is_plain_name

EXAMPLE = """\
tensorfab train examples/mnist-lenet.yaml                    # data in ../shared/data/mnist
tensorfab train examples/digits-lenet.yaml --set train.epochs=3 --name quick
tensorfab train examples/digits-lenet.yaml --resume          # continue after a kill
tensorfab train examples/digits-lenet.yaml --profile --set train.epochs=1   # where time goes
tensorfab train examples/digits-lenet.yaml --resume --set train.epochs=20   # train on
torchrun --nproc_per_node 2 -m tensorfab.cli.main train examples/digits-lenet.yaml
tensorfab train examples/digits-lenet.yaml --ray local --workers 2   # Ray Train, DDP on gloo
tensorfab train examples/digits-lenet.yaml --ray 10.0.0.5:6379 --workers 8   # a Ray cluster"""


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", nargs="?", help="job spec YAML (default: built-in defaults)")
    add_set_argument(parser)


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeatable): the spec overrides every spec-taking command reads."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec field, e.g. train.epochs=3",
    )


def configure(parser: argparse.ArgumentParser) -> None:
    add_spec_arguments(parser)
    parser.add_argument("--name", help="run directory name (default: the spec's name)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run from its last checkpoint; a run that is already complete is "
        "left as it is (exit 0), one given more train.epochs trains on",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record training steps 4-8 with torch.profiler: <run>/profile/trace.json and "
        "top_ops.md (default: off)",
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.add_argument("--json", action="store_true", help="print the final report as JSON")
    parser.add_argument(
        "--ray",
        metavar="ADDR",
        help="train under Ray Train: local (a private Ray on 127.0.0.1) or a cluster's "
        "HOST:PORT / ray://HOST:10001 (needs pip install 'tensorfab[ray]')",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="with --ray: training workers, DDP (default 2)"
    )
    parser.add_argument(
        "--max-failures",
        type=int,
        default=3,
        help="with --ray: worker-group restarts after a lost worker, each resuming from the "
        "last checkpoint (default 3)",
    )


def run(args: argparse.Namespace) -> int:
    from tensorfab.audit.card import write_card
    from tensorfab.engine.fit import Interrupted  # torch: imported when training, not for --help
    from tensorfab.engine.train import train

    overrides = list(args.overrides)
    if args.name:
        if not is_plain_name(args.name):
            raise TensorfabError(f"--name {args.name!r}: a run name is {RULE}")
        overrides.append(f"output.name={args.name}")
    spec = load_spec(args.spec, overrides)
    if args.ray:
        return _run_on_ray(args, spec)
    try:
        result = train(
            spec, resume=args.resume, quiet=args.quiet or args.json, profile=args.profile
        )
    except Interrupted as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return exc.exit_code
    if not result.is_main:
        return 0  # under torchrun rank 0 prints the report, once
    if result.message and not (args.quiet or args.json):
        print(result.message, file=sys.stderr)
        return 0
    if result.status != "already-complete":  # a complete run is left exactly as it was
        write_card(result.run_dir)  # every package gets its model card, from what was measured
    if args.json:
        print(json.dumps(result.report, indent=2))
    elif not args.quiet:
        print(f"report: {result.run_dir / 'report.md'}", file=sys.stderr)
        print(f"model:  {result.run_dir / 'model'}", file=sys.stderr)
    return 0


def _run_on_ray(args: argparse.Namespace, spec: JobSpec) -> int:
    from tensorfab.audit.card import write_card
    from tensorfab.engine.ray_train import train_on_ray
    from tensorfab.engine.rundir import run_path

    report = train_on_ray(
        spec, args.ray, args.workers, resume=args.resume, max_failures=args.max_failures
    )
    run_dir = run_path(spec)
    write_card(run_dir)
    if args.json:
        print(json.dumps(report, indent=2))
    elif not args.quiet:
        print(f"report: {run_dir / 'report.md'}", file=sys.stderr)
        print(f"model:  {run_dir / 'model'}", file=sys.stderr)
    return 0
