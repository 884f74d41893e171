"""``data.label_pieces`` first vs all: tensorfab's own entity F1 on the same short runs.

Usage (from the repository root, after the runs it reads were trained; see README's
"Hugging Face export" row for their command, one run per seed and setting, named
``hf-<setting>-tiny[-s<seed>]``):

    .venv/bin/python benchmarks/label_pieces_f1.py runs/hf-first-tiny runs/hf-all-tiny ...

Reads each run's package record (the selection epoch's F1 on the 400-sentence eval subset
and the F1 of that model on all 3,250 CoNLL valid sentences, per CoNLL word) and writes
them, grouped by ``label_pieces``, with means, to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from pathlib import Path

from tensorfab.files import write_text_atomic


def run_row(run: Path) -> dict:
    meta = json.loads((run / "model" / "tensorfab.json").read_text())
    spec = meta["data"]["spec"]
    metrics = meta["metrics"]
    return {
        "run": run.as_posix(),
        "label_pieces": meta["task_config"].get("label_pieces", "first"),
        "seed": json.loads((run / "report.json").read_text()).get("spec", {}).get("seed"),
        "limit_train": spec.get("limit_train"),
        "eval_subset_f1": metrics["selection"]["f1"],
        "selected_epoch": metrics["selection"]["epoch"],
        "valid_f1": metrics["test"]["f1"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories")
    parser.add_argument(
        "--out", default="benchmarks/results/cpu-2026-11-30-hf-label-pieces-f1.json"
    )
    args = parser.parse_args()
    rows = [run_row(Path(r)) for r in args.runs]
    groups: dict[str, list[float]] = {}
    for row in rows:
        groups.setdefault(row["label_pieces"], []).append(row["valid_f1"])
    summary = {
        "what": "tensorfab entity F1 per CoNLL word, data.label_pieces first vs all, same runs",
        "date": datetime.date.today().isoformat(),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "runs": rows,
        "mean_valid_f1": {k: statistics.mean(v) for k, v in groups.items()},
    }
    write_text_atomic(Path(args.out), json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
