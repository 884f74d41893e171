"""MNIST LeNet with DP-SGD, recorded: one finished run's ε, history and test accuracy, plus the
membership-inference attack on its package, as one JSON result (issue 15's benchmark).

The run itself is `tensorfab train examples/mnist-lenet-dp.yaml`; its epoch was picked on the
validation part, and test was scored once, at the end, by the run. This script only reads the
run and attacks its package (members: the train part it trained on, non-members: test).

Run: python benchmarks/mnist_dp.py runs/mnist-lenet-dp --command "..." [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from tensorfab.audit.privacy import membership_inference
from tensorfab.files import atomic_path

TARGET = {"test_accuracy": 0.965, "epsilon": 3.0, "attack_auc": 0.55}


def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "unknown"


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """What the run's report says: privacy, the epoch picked on validation, test, history."""
    history = [
        {"epoch": h.get("epoch"), "val_accuracy": h.get("accuracy"), "epsilon": h.get("epsilon")}
        for h in report["history"]
    ]
    return {
        "spec": report["spec"],
        "data": {k: report["data"][k] for k in ("train_size", "eval_size", "test_size")},
        "privacy": report.get("privacy"),
        "best_on_validation": report["metrics"]["best"],
        "test_accuracy": report["metrics"]["test"].get("accuracy"),
        "history": history,
        "hardware": report["hardware"],
        "total_s": report["timings"]["total_s"],
        "train_samples_per_s": report["throughput"].get("train_samples_per_s"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="the finished run directory (runs/mnist-lenet-dp)")
    parser.add_argument("--command", default="", help="the train command, recorded as given")
    parser.add_argument("--rounds", type=int, default=1000, help="bootstrap rounds (1000)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    run = Path(args.run)
    out = summary(json.loads((run / "report.json").read_text(encoding="utf-8")))
    load_before, t0 = _load(), time.perf_counter()
    attack = membership_inference(run, rounds=args.rounds).to_dict()
    out["membership_inference"] = {
        **attack,
        "seconds": round(time.perf_counter() - t0, 1),
        "load_1min_before": load_before,
        "load_1min_after": _load(),
    }
    eps = (out["privacy"] or {}).get("epsilon", float("inf"))
    out["command"] = args.command
    out["machine"] = {"cpus": os.cpu_count(), "processor": platform.processor()}
    out["targets"] = {
        **TARGET,
        "accuracy_met": (out["test_accuracy"] or 0) >= TARGET["test_accuracy"]
        and eps <= TARGET["epsilon"],
        "attack_met": attack["auc"] <= TARGET["attack_auc"] and eps <= TARGET["epsilon"],
    }
    text = json.dumps(out, indent=2) + "\n"
    if args.out:
        with atomic_path(Path(args.out)) as tmp:
            tmp.write_text(text, encoding="utf-8")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
