"""``tensorfab audit robustness``: the model's scores under its task's perturbations."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tensorfab.audit.card import write_card
from tensorfab.audit.robustness import robustness_report, write_report
from tensorfab.hardware import resolve_device

EXAMPLE = """\
tensorfab audit robustness runs/digits-lenet                  # FGSM and PGD, eps 0.05..0.2
tensorfab audit robustness runs/sst2-minilm --samples 300 --json   # character noise"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run directory or model package directory")
    parser.add_argument("--data", help="labelled data to attack (default: the test split)")
    parser.add_argument(
        "--samples",
        type=int,
        default=1000,
        help="examples drawn from it, at least 1 (default 1000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="draw and noise seed (default 0)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, auto")
    parser.add_argument(
        "--no-save", action="store_true", help="do not store audit/robustness.json in the package"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    resolve_device(args.device, "--device")
    report = robustness_report(
        args.model, args.data, samples=args.samples, device=args.device, seed=args.seed
    )
    saved = None if args.no_save else write_report(report)
    if saved:
        write_card(report["model"])  # the card's robustness section follows the new report
    if args.json:
        print(json.dumps(report, indent=2, default=float))
        return 0
    _print(report)
    if saved:
        print(f"saved {saved}")
    return 0


def _print(report: dict[str, Any]) -> None:
    metric = report["metric"]
    print(f"{report['model']} on {report['data']}, {report['device']}, {report['seconds']} s")
    print(f"{'attack':<12} {'eps':>6} {metric:>10}")
    for row in report["rows"]:
        print(f"{row['attack']:<12} {row['eps']:>6.2f} {row[metric]:>10.4f}")
