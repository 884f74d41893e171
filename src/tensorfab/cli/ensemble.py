"""``tensorfab ensemble RUN RUN [...] --out DIR``: one model package of several finished runs."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tensorfab.package.ensemble import pack_ensemble
from tensorfab.package.io import read_meta

EXAMPLE = """\
tensorfab train examples/conll2003-minilm-context.yaml --name ner-seed0
tensorfab train examples/conll2003-minilm-context.yaml --set seed=1 --name ner-seed1
tensorfab ensemble runs/ner-seed0 runs/ner-seed1 --out runs/ner-ensemble
tensorfab evaluate runs/ner-ensemble          # then predict, export and serve it like any model"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="two or more run directories or model packages of the same model trained again "
        "(another seed): same task, labels, settings, architecture, data and tokenizer",
    )
    parser.add_argument("--out", required=True, help="the ensemble's package folder (new or empty)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    out = pack_ensemble(args.runs, args.out)
    members = read_meta(out)["ensemble"]["members"]
    result = summary(str(out), members)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"wrote {out}: an ensemble of {len(members)} models (inference costs {len(members)}x)")
    for m in members:
        trained = f", training loop {m['train_s']:,.1f} s" if m["train_s"] is not None else ""
        print(f"  {m['path']}: {headline(m['metrics'])}{trained}")
    print(f"score it: tensorfab evaluate {out}")
    return 0


def headline(metrics: dict[str, Any]) -> str:
    """A member's score alone as its run reported it (on the run's test split, or on its
    evaluation data where the spec had no test split): F1 (NER) or accuracy."""
    for name in ("f1", "accuracy"):
        if isinstance(metrics.get(name), float):
            return f"{name} {metrics[name]:.4f} alone (as its run reported it)"
    return "no recorded score"


def summary(out: str, members: list[dict[str, Any]]) -> dict[str, Any]:
    """What ``--json`` prints: the package, its members and their summed training time."""
    times = [m["train_s"] for m in members]
    total = sum(times) if all(t is not None for t in times) else None
    return {"package": out, "members": members, "train_s": total}
