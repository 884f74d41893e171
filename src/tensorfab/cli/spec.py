"""``tensorfab spec SPEC``: validate a job spec and print it resolved (defaults + overrides)."""

from __future__ import annotations

import argparse
import json

from tensorfab.cli.train import add_spec_arguments
from tensorfab.spec import dump_spec, load_spec

EXAMPLE = "tensorfab spec examples/mnist-lenet.yaml --set train.epochs=3 --json"


def configure(parser: argparse.ArgumentParser) -> None:
    add_spec_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of YAML")


def run(args: argparse.Namespace) -> int:
    from tensorfab.models import model_entry  # torch: imported when run, not for --help

    spec = load_spec(args.spec, args.overrides)
    # the schema cannot know the registry (spec is the lowest layer); the model's name is
    # checked here too, so `spec` finds what `train` would refuse before any work
    model_entry(spec.model.name)
    print(
        json.dumps(spec.model_dump(mode="json"), indent=2) if args.json else dump_spec(spec),
        end="\n" if args.json else "",
    )
    return 0
