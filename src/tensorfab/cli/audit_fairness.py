"""``tensorfab audit fairness MODEL --data FILE --sensitive sex[,race]``: fairness by group;
``--counterfactual gender|name|name-origin``: templated sentences that differ only in a person,
scored by a sentiment model (probability of the favourable class) or an NER model (PER recall)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tensorfab.audit.fairness import report_markdown
from tensorfab.audit.fairness_model import audit_model, write_report
from tensorfab.audit.fairness_text import (
    counterfactual_markdown,
    counterfactual_report,
    probe_sets,
)
from tensorfab.errors import TensorfabError

EXAMPLE = """\
tensorfab audit fairness runs/adult-mlp --data ../shared/data/adult/adult.test --sensitive sex
tensorfab audit fairness runs/adult-mlp --data adult.test --sensitive sex,race --json
tensorfab audit fairness runs/sst2-minilm --counterfactual gender
tensorfab audit fairness runs/conll2003-minilm --counterfactual name-origin --json"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run directory or model package directory")
    parser.add_argument("--data", help="labelled CSV table (header, label last)")
    parser.add_argument("--sensitive", help="column(s) to group by, comma-separated: sex,race")
    parser.add_argument(
        "--counterfactual",
        choices=sorted(probe_sets()),
        help="text models, no --data: templated sentences differing only in a person; "
        "gender, name: a sentiment model's P(favourable); name-origin: an NER model's PER recall",
    )
    parser.add_argument("--positive", help="the favourable class (default: the model's last class)")
    parser.add_argument(
        "--bootstrap", type=int, default=200, help="resamples for 95%% intervals (default 200)"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument(
        "--out", default=None, help="folder for fairness.json/.md and PNGs (default: none)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    if args.counterfactual:
        report = counterfactual_report(args.model, args.counterfactual, args.positive)
        print(json.dumps(report, indent=2) if args.json else counterfactual_markdown(report))
        return 0
    if not args.data or not args.sensitive:
        raise TensorfabError("audit fairness: give --data FILE and --sensitive COLUMNS")
    sensitive = [c.strip() for c in args.sensitive.split(",") if c.strip()]
    report = audit_model(
        args.model,
        args.data,
        sensitive,
        positive=args.positive,
        n_boot=args.bootstrap,
        seed=args.seed,
    )
    written = write_report(report, Path(args.out)) if args.out else []
    if not args.json:
        print("\n".join(f"wrote {p}" for p in written))
    print(json.dumps(report, indent=2) if args.json else report_markdown(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run on its own (before ``tensorfab audit`` has its table entry)."""
    parser = argparse.ArgumentParser(
        prog="tensorfab audit fairness", epilog="example:\n  " + EXAMPLE
    )
    configure(parser)
    try:
        return run(parser.parse_args(argv))
    except TensorfabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
