"""MovieLens-100k: one recommendation spec trained with several seeds, test metrics (full
ranking, RecBole protocol) per seed and their mean, in one JSON.

Each seed is one plain ``tensorfab train`` run; its test figures are the best epoch's by
the eval split's ``train.metric`` (test never selects anything). Usage:

    nice -n 10 python benchmarks/recsys_seeds.py examples/movielens-100k-softmax.yaml \\
        --seeds 0 1 2 --out benchmarks/results/cpu-2026-11-30-movielens-softmax.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

from tensorfab.files import atomic_path

CLI = [sys.executable, "-m", "tensorfab.cli.main"]
METRICS = ("hit@10", "ndcg@10", "recall@10", "mrr@10", "sampled99_hit@10", "sampled99_ndcg@10")


def train(spec: str, seed: int, sets: list[str], runs_dir: str) -> dict[str, Any]:
    """One seed's run: its report's test metrics, best epoch, training time and load."""
    name = f"{Path(spec).stem}-seed{seed}"
    extra = [a for s in sets for a in ("--set", s)]
    args = [*CLI, "train", spec, "--set", f"seed={seed}", "--set", f"output.runs_dir={runs_dir}"]
    load = os.getloadavg()[0]
    done = subprocess.run(
        [*args, *extra, "--name", name, "--json", "--quiet"], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"error: seed {seed}: {done.stderr.strip()[-400:]}")
    report = json.loads(done.stdout)
    return {
        "seed": seed,
        "test": {k: round(report["metrics"]["test"][k], 4) for k in METRICS},
        "best_epoch": report["metrics"]["best"]["epoch"],
        "epochs": len(report["history"]),
        "train_s": round(report["timings"]["train_s"], 1),
        "total_s": round(report["timings"]["total_s"], 1),
        "train_samples_per_s": round(report["throughput"]["train_samples_per_s"]),
        "load_1m": [round(load, 1), round(os.getloadavg()[0], 1)],  # before, after
        "device": report["hardware"]["device_name"],
    }


def _recorded(argv: list[str]) -> list[str]:
    """The arguments as recorded: without --runs-dir, which changes where runs go, not
    what they measure (and may be an absolute path of one machine)."""
    if "--runs-dir" not in argv:
        return argv
    at = argv.index("--runs-dir")
    return argv[:at] + argv[at + 2 :]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", action="append", default=[], help="spec overrides for all")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = [train(args.spec, s, args.set, args.runs_dir) for s in args.seeds]
    mean = {k: round(sum(r["test"][k] for r in rows) / len(rows), 4) for k in METRICS}
    result = {
        "date": date.today().isoformat(),
        "command": " ".join(["python benchmarks/recsys_seeds.py", *_recorded(sys.argv[1:])]),
        "spec": args.spec,
        "overrides": args.set,
        "seeds": rows,
        "mean_test": mean,
    }
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
