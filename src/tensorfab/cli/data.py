"""``tensorfab data fetch NAME``: put a data set that cannot be shipped into the data folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EXAMPLE = (
    "tensorfab data fetch movielens-100k            # into ~/.cache/tensorfab/data/ml-100k\n"
    "  tensorfab data fetch movielens-100k --out data --json"
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["fetch"], help="what to do (fetch)")
    parser.add_argument("name", help="data set: movielens-100k (from the recbole 1.2.1 wheel)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="data folder (default: $TENSORFAB_DATA or ~/.cache/tensorfab/data)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON (data only) to stdout")


def run(args: argparse.Namespace) -> int:
    from tensorfab.data.fetch import fetch

    got = fetch(args.name, args.out)
    if args.json:
        record = {
            "name": got.name,
            "folder": str(got.folder),
            "sha256": got.files,
            "already_there": got.already_there,
        }
        print(json.dumps(record, indent=2))
        return 0
    state = "already there, checked" if got.already_there else "fetched, sha256 checked"
    print(f"{got.name}: {state}: {got.folder} ({', '.join(got.files)})")
    return 0
