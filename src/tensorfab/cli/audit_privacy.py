"""``tensorfab audit privacy MODEL``: loss-threshold membership inference, attack AUC + CI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tensorfab.audit.privacy import markdown, membership_inference
from tensorfab.errors import TensorfabError
from tensorfab.files import atomic_path

EXAMPLE = """\
tensorfab audit privacy runs/digits-lenet                 # members = train, non-members = test
tensorfab audit privacy runs/digits-dp --json --rounds 2000 --out runs/digits-dp/privacy.json"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run directory or model package directory")
    parser.add_argument(
        "--rounds", type=int, default=1000, help="bootstrap rounds of the 95%% CI (default 1000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument(
        "--batch-size", type=int, default=512, help="examples per forward pass (default 512)"
    )
    parser.add_argument("--out", help="also write the result to this file (.json or .md)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    for flag, value in (("--rounds", args.rounds), ("--batch-size", args.batch_size)):
        if value < 1:
            raise TensorfabError(f"{flag} {value}: must be at least 1")
    result = membership_inference(
        args.model, batch_size=args.batch_size, rounds=args.rounds, seed=args.seed
    )
    as_json = json.dumps(result.to_dict(), indent=2)
    as_md = markdown(result, args.model)
    if args.out:
        out = Path(args.out)
        with atomic_path(out) as tmp:
            tmp.write_text(as_json if out.suffix == ".json" else as_md, encoding="utf-8")
    print(as_json if args.json else as_md)
    return 0
