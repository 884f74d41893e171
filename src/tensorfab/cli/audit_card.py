"""``tensorfab audit card``: regenerate a package's README.md model card from its reports."""

from __future__ import annotations

import argparse

from tensorfab.audit.card import write_card

EXAMPLE = """\
tensorfab audit robustness runs/digits-lenet     # measure first: the card reports it
tensorfab audit card runs/digits-lenet           # writes runs/digits-lenet/model/README.md"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run directory or model package directory")


def run(args: argparse.Namespace) -> int:
    path = write_card(args.model)
    print(f"model card: {path} (manifest rewritten; sign again if the package was signed)")
    return 0
